package postgresql

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config is what a state.postgresql (v2) component's metadata says.
type Config struct {
	// Pool is the connection pool's configuration, from connectionString
	// and the pool fields.
	Pool *pgxpool.Config
	// Table is the state table, MetadataTable the table of schema versions
	// and cleanup times; both may be "schema.table".
	Table, MetadataTable string
	// Timeout bounds every database operation.
	Timeout time.Duration
	// CleanupInterval is how often expired rows are deleted; 0: never.
	CleanupInterval time.Duration
}

// Defaults, as daprd's state.postgresql v2.
const (
	DefaultTable           = "state"
	DefaultMetadataTable   = "dapr_metadata"
	DefaultTimeout         = 20 * time.Second
	DefaultCleanupInterval = time.Hour
)

// fields are the metadata of a state.postgresql component: daprd's v2
// names and aliases, tableName (v1's name, taken here too), and the
// fields the state API reads for every store.
var fields = []string{
	"connectionString", "url", "tablePrefix", "tableName", "metadataTableName",
	"timeout", "timeoutInSeconds", "cleanupInterval", "cleanupIntervalInSeconds",
	"maxConns", "connectionMaxIdleTime", "queryExecMode", "useAzureAD", "useAWSIAM",
	"keyPrefix", "maxTransactionOperations", "actorStateStore",
}

// ParseMetadata validates a state.postgresql component's metadata. Errors
// name the field and what it accepts; none repeats the connection string,
// which may hold a password.
func ParseMetadata(md map[string]string) (Config, error) {
	for k := range md {
		if !slices.Contains(fields, k) {
			return Config{}, fmt.Errorf("metadata %q is not a state.postgresql field; accepted: %s", k, strings.Join(fields, ", "))
		}
	}
	var c Config
	conn, err := oneOf(md, "connectionString", "url")
	if err != nil {
		return Config{}, err
	}
	if conn == "" {
		return Config{}, fmt.Errorf("metadata connectionString is missing: give the database as a PostgreSQL connection string, e.g. \"host=localhost user=postgres password=example port=5432 database=dapr\" or postgres://user:password@localhost:5432/dapr")
	}
	if c.Pool, err = pgxpool.ParseConfig(conn); err != nil {
		return Config{}, fmt.Errorf("metadata connectionString cannot be read: %s", redact(err.Error(), md))
	}
	for _, f := range []string{"useAzureAD", "useAWSIAM"} {
		if v, ok := md[f]; ok {
			on, err := strconv.ParseBool(v)
			if err != nil {
				return Config{}, fmt.Errorf("metadata %s %q: want true or false", f, v)
			}
			if on {
				return Config{}, fmt.Errorf("metadata %s: this sidecar authenticates to PostgreSQL with the connection string's user and password only; set %s to false", f, f)
			}
		}
	}
	if v, ok := md["maxConns"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 10000 {
			return Config{}, fmt.Errorf("metadata maxConns %q: want a whole number from 0 (the driver's default) to 10000", v)
		}
		if n > 1 { // as daprd: 0 and 1 keep the driver's default
			c.Pool.MaxConns = int32(n)
		}
	}
	if v, ok := md["connectionMaxIdleTime"]; ok {
		d, err := parseDuration(v)
		if err != nil || d < 0 {
			return Config{}, fmt.Errorf("metadata connectionMaxIdleTime %q: want a Go duration such as 5m, or a number of seconds", v)
		}
		if d > 0 {
			c.Pool.MaxConnIdleTime = d
		}
	}
	if v, ok := md["queryExecMode"]; ok && v != "" {
		modes := map[string]pgx.QueryExecMode{
			"cache_statement": pgx.QueryExecModeCacheStatement,
			"cache_describe":  pgx.QueryExecModeCacheDescribe,
			"describe_exec":   pgx.QueryExecModeDescribeExec,
			"exec":            pgx.QueryExecModeExec,
			"simple_protocol": pgx.QueryExecModeSimpleProtocol,
		}
		m, ok := modes[v]
		if !ok {
			return Config{}, fmt.Errorf("metadata queryExecMode %q: accepted: cache_statement, cache_describe, describe_exec, exec, simple_protocol", v)
		}
		c.Pool.ConnConfig.DefaultQueryExecMode = m
	}

	prefix, hasPrefix := md["tablePrefix"]
	name, hasName := md["tableName"]
	switch {
	case hasPrefix && hasName:
		return Config{}, fmt.Errorf("metadata tablePrefix and tableName are both set; give one: tablePrefix (daprd's v2 field) names the table <prefix>state, tableName the whole table")
	case hasName:
		c.Table = name
	default:
		c.Table = prefix + DefaultTable
	}
	if err := checkTable("tableName", c.Table); err != nil {
		return Config{}, err
	}
	c.MetadataTable = DefaultMetadataTable
	if v, ok := md["metadataTableName"]; ok {
		c.MetadataTable = v
	}
	if err := checkTable("metadataTableName", c.MetadataTable); err != nil {
		return Config{}, err
	}
	if strings.EqualFold(c.Table, c.MetadataTable) {
		return Config{}, fmt.Errorf("metadata tableName and metadataTableName are both %q; give them different tables", c.Table)
	}

	c.Timeout = DefaultTimeout
	v, err := oneOf(md, "timeout", "timeoutInSeconds")
	if err != nil {
		return Config{}, err
	}
	if v != "" {
		if c.Timeout, err = parseDuration(v); err != nil || c.Timeout < time.Second {
			return Config{}, fmt.Errorf("metadata timeout %q: want a Go duration of at least 1s, such as 20s, or a number of seconds", v)
		}
	}
	c.CleanupInterval = DefaultCleanupInterval
	if v, err = oneOf(md, "cleanupInterval", "cleanupIntervalInSeconds"); err != nil {
		return Config{}, err
	}
	if v != "" {
		d, err := parseDuration(v)
		if err != nil {
			return Config{}, fmt.Errorf("metadata cleanupInterval %q: want a Go duration such as 1h, or a number of seconds; 0 or less turns the cleanup off", v)
		}
		c.CleanupInterval = max(d, 0)
	}
	return c, nil
}

// oneOf returns the value of a field that daprd also reads under an alias;
// both set is an error.
func oneOf(md map[string]string, name, alias string) (string, error) {
	v, ok1 := md[name]
	a, ok2 := md[alias]
	if ok1 && ok2 {
		return "", fmt.Errorf("metadata %s and %s are the same field; give one", name, alias)
	}
	if ok2 {
		return a, nil
	}
	return v, nil
}

// parseDuration reads a Go duration, or a whole number of seconds, as
// daprd reads the durations of component metadata.
func parseDuration(v string) (time.Duration, error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n > int64(1<<63-1)/int64(time.Second) || n < -int64(1<<63-1)/int64(time.Second) {
			return 0, fmt.Errorf("out of range")
		}
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(v)
}

// checkTable accepts what can go unquoted into SQL, as daprd writes table
// names: an identifier, or schema.identifier, of letters, digits, _ and $,
// not starting with a digit or $, at most 63 bytes each. PostgreSQL folds
// them to lower case, as it does daprd's.
func checkTable(field, v string) error {
	bad := func() error {
		return fmt.Errorf("metadata %s %q: want a table name, or schema.table, of letters, digits and _ (at most 63 each), starting with a letter or _", field, v)
	}
	parts := strings.Split(v, ".")
	if len(parts) > 2 {
		return bad()
	}
	for _, p := range parts {
		if p == "" || len(p) > 63 {
			return bad()
		}
		for i, r := range p {
			switch {
			case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
			case i > 0 && (r >= '0' && r <= '9' || r == '$'):
			default:
				return bad()
			}
		}
	}
	return nil
}

// redact takes the password out of a message about the connection string.
func redact(msg string, md map[string]string) string {
	for _, f := range []string{"connectionString", "url"} {
		if cs := md[f]; cs != "" {
			msg = strings.ReplaceAll(msg, cs, "<connectionString>")
		}
	}
	return msg
}
