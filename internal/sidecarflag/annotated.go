package sidecarflag

// An Option is a sidecar flag that a pod's annotation sets: the injector
// checks the annotation against what the flag accepts and writes the flag.
type Option struct {
	// Annotation is the pod's annotation, as Dapr names it.
	Annotation string
	// Flag is the sidecar's flag that takes the annotation's value as it
	// is, in the same units: daprd's name.
	Flag string
	// Value is what the annotation takes. For a number it is the flag's
	// own bounds, the variable the sidecar parses the flag with.
	Value Value
	// Accepted says what the annotation takes, in its errors.
	Accepted string
	// Default, when set, is the flag's default, which the injector writes
	// for a pod without the annotation.
	Default string
	// Writes, when set, is the flag the injector writes instead of Flag: a
	// size in bytes, the annotation's value times Unit. Two annotations
	// that write the same flag are one limit; a pod gives one of them.
	Writes string
	Unit   int64
}

// Written is the flag the injector writes for the option.
func (o Option) Written() string {
	if o.Writes != "" {
		return o.Writes
	}
	return o.Flag
}

// A Value is what an option's annotation takes: Bool, Port, Int, Size,
// Duration, Words or Name.
type Value interface{ value() }

// Bool is on or off; Default is the flag's default, which the injector does
// not write. The injector writes --flag or --flag=false.
type Bool struct{ Default bool }

// Port is a port of the pod: 1 to Flag.Hi. The flag takes 0 too (no app
// port, or any free port), which has no place in a pod, whose ports are
// declared.
type Port struct{ Flag Int }

// Words are the words the annotation takes; the flag takes them, and maybe
// more (a protocol or a level the injector does not offer).
type Words []string

// Name is the name of a Kubernetes object, such as a Configuration: the
// injector checks it is one (a DNS-1123 subdomain); the flag takes a file's
// path too, in standalone mode.
type Name struct{}

func (Bool) value()     {}
func (Port) value()     {}
func (Int) value()      {}
func (Size) value()     {}
func (Duration) value() {}
func (Words) value()    {}
func (Name) value()     {}

// Annotated are the options a pod's annotation sets, in the order the
// injector checks them. The app id is not among them: it names the app, and
// every pod has one.
var Annotated = []Option{
	{Annotation: "dapr.io/app-port", Flag: "app-port", Value: Port{AppPort}, Accepted: "1 to 65535"},
	{Annotation: "dapr.io/app-protocol", Flag: "app-protocol", Value: Words{"http", "grpc", "h2c", "https"},
		Accepted: "http, grpc, h2c, https", Default: DefaultAppProtocol},
	{Annotation: "dapr.io/config", Flag: "config", Value: Name{}, Accepted: "the name of a Configuration"},
	{Annotation: "dapr.io/log-level", Flag: "log-level", Value: Words{"debug", "info", "warn", "error"},
		Accepted: "debug, info, warn, error", Default: DefaultLogLevel},
	{Annotation: "dapr.io/log-as-json", Flag: "log-as-json", Value: Bool{}, Accepted: `"true", "false"`},
	{Annotation: "dapr.io/enable-metrics", Flag: "enable-metrics", Value: Bool{Default: true}, Accepted: `"true", "false"`},
	{Annotation: "dapr.io/metrics-port", Flag: "metrics-port", Value: Port{ListenPort}, Accepted: "1 to 65535"},
	{Annotation: "dapr.io/max-body-size", Flag: "max-body-size", Value: MaxBodySize,
		Accepted: "a size from 1 byte to 1Ti, such as 4Mi or 16Mi"},
	{Annotation: "dapr.io/http-max-request-size", Flag: "dapr-http-max-request-size", Value: MaxRequestSizeMB,
		Accepted: "-1 for the sidecar's default (4 MB), or 1 to 1048576 MB", Writes: "max-body-size", Unit: 1 << 20},
	{Annotation: "dapr.io/http-read-buffer-size", Flag: "dapr-http-read-buffer-size", Value: ReadBufferSizeKB,
		Accepted: "-1 for the sidecar's default (64 KB), or 1 to 8192 KB", Writes: "read-buffer-size", Unit: 1 << 10},
	{Annotation: "dapr.io/graceful-shutdown-seconds", Flag: "dapr-graceful-shutdown-seconds", Value: GracefulShutdown,
		Accepted: "-1 for the sidecar's default (5), or 0 to 3600 seconds"},
	{Annotation: "dapr.io/app-max-concurrency", Flag: "app-max-concurrency", Value: AppMaxConcurrency,
		Accepted: "-1 or 0 for no bound, or 1 to 1048576 calls in flight to the app"},
	{Annotation: "dapr.io/block-shutdown-duration", Flag: "dapr-block-shutdown-duration", Value: BlockShutdown,
		Accepted: "a duration from 0s to 1h, such as 5s"},
}
