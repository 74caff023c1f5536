package state

import (
	"fmt"
	"strconv"
	"time"
)

// MetadataTTL is the request metadata key that sets a save's time to live.
const MetadataTTL = "ttlInSeconds"

// ParseTTL reads the ttlInSeconds metadata of a save of key: 0 when absent
// (the store's default), -1 for "never expires", else a positive duration.
func ParseTTL(key string, md map[string]string) (time.Duration, error) {
	v, ok := md[MetadataTTL]
	if !ok {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < -1 || n == 0 {
		return 0, fmt.Errorf("key %q: metadata %s %q: want a positive whole number of seconds, or -1 for never: %w", key, MetadataTTL, v, ErrBadRequest)
	}
	if n == -1 {
		return -1, nil
	}
	return time.Duration(n) * time.Second, nil
}

// ParseConcurrency parses a concurrency option: true for first-write.
func ParseConcurrency(s string) (firstWrite bool, err error) {
	return parseChoice("concurrency", s, FirstWrite, LastWrite)
}

// ParseConsistency parses a consistency option: true for strong.
func ParseConsistency(s string) (strong bool, err error) {
	return parseChoice("consistency", s, Strong, Eventual)
}

// parseChoice parses a two-valued option: on is true, off or empty false,
// anything else an error naming the option and both values.
func parseChoice(name, s, on, off string) (bool, error) {
	switch s {
	case "", off:
		return false, nil
	case on:
		return true, nil
	}
	return false, fmt.Errorf("%s %q is not valid; accepted: %s, %s: %w", name, s, on, off, ErrBadRequest)
}
