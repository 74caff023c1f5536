package state

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// MetadataTTL is the request metadata key that sets a save's time to live,
// and the Component metadata field of a store's default.
const MetadataTTL = "ttlInSeconds"

// MaxTTLSeconds is the longest time to live: the most whole seconds a
// time.Duration holds (about 292 years).
const MaxTTLSeconds = int64(math.MaxInt64 / time.Second)

// ParseTTL reads the ttlInSeconds metadata of a save of key: 0 when absent
// (the store's default), -1 for "never expires", else a positive duration.
func ParseTTL(key string, md map[string]string) (time.Duration, error) {
	v, ok := md[MetadataTTL]
	if !ok {
		return 0, nil
	}
	d, err := parseTTLSeconds(v)
	if err != nil || d == 0 {
		return 0, fmt.Errorf("key %q: metadata %s %q: want a whole number of seconds from 1 to %d, or -1 for never: %w", key, MetadataTTL, v, MaxTTLSeconds, ErrBadRequest)
	}
	return d, nil
}

// ParseDefaultTTL reads a store's default time to live, the ttlInSeconds
// of its Component: 0 or -1 for none (values never expire), else a
// positive duration.
func ParseDefaultTTL(v string) (time.Duration, error) {
	d, err := parseTTLSeconds(v)
	if err != nil {
		return 0, fmt.Errorf("metadata %s %q: want a whole number of seconds from 0 to %d (0 or -1: values never expire)", MetadataTTL, v, MaxTTLSeconds)
	}
	return max(d, 0), nil
}

// parseTTLSeconds is the one reader of ttlInSeconds values: a whole number
// of seconds from -1 to MaxTTLSeconds, as a Duration (-1 stays -1). Any
// other text, and numbers a Duration cannot hold, are an error.
func parseTTLSeconds(v string) (time.Duration, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < -1 || n > MaxTTLSeconds {
		return 0, errors.New("out of range")
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
