package pubsub

import (
	"fmt"
	"strconv"
	"time"
)

// ScopeFields are the component metadata that the pub/sub API reads for
// every pub/sub component (scopes and topic access, as daprd names them);
// components accept them beside their own fields.
var ScopeFields = []string{"publishingScopes", "subscriptionScopes", "allowedTopics", "protectedTopics"}

// ParseDuration reads the duration of metadata field name as daprd's
// components do: a Go duration ("60s", "1m30s") or whole milliseconds
// ("60000"). It must be positive; an error names the field and both forms.
func ParseDuration(name, v string) (time.Duration, error) {
	if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
		if ms > 0 && ms <= int64(time.Duration(1<<63-1)/time.Millisecond) {
			return time.Duration(ms) * time.Millisecond, nil
		}
	} else if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return d, nil
	}
	return 0, fmt.Errorf("metadata %s %q: want a positive Go duration such as 60s, or whole milliseconds such as 60000", name, v)
}
