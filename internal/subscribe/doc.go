// Package subscribe delivers the events of the app's subscriptions to the
// app, as daprd does, and acknowledges an event to its broker only when
// that is safe.
//
// A Subscriber is given a pubsub.Service, the channel to the app (an HTTP
// app's, or a gRPC app's AppCallback) and the declared subscriptions; it
// reads the app's own (GET /dapr/subscribe, ListTopicSubscriptions) once
// the app is healthy, and subscribes to each through the Service, which
// follows a pub/sub component across hot reloads.
//
// For each event:
//
//   - it is read as a CloudEvent (a rawPayload subscription wraps what was
//     published in an envelope of its own); one that is not is sent to the
//     dead-letter topic, or else stays pending;
//   - an event whose expiration has passed is dropped (and sent to the
//     dead-letter topic when there is one, as daprd);
//   - the routing rules pick its path; an event no rule matches is dropped
//     (likewise);
//   - it is posted to the path as application/cloudevents+json, or given to
//     OnTopicEvent, and the app's answer classified as daprd classifies it
//     (pubsub.StatusFromHTTP, pubsub.StatusFromGRPC); a bulk subscription
//     gives it to the app in a batch with the others of its path waiting at
//     once, and takes the app's status for its entry (bulk.go);
//   - SUCCESS acknowledges it; DROP too (and a DROP the app answered itself,
//     not a 404 or Unimplemented, goes to the dead-letter topic); RETRY and
//     no answer are tried again under the component's inbound retry policy
//     (DefaultRetry without one). When the retries run out, an event the app
//     had goes to the dead-letter topic when there is one; otherwise, and
//     always when the app could not be reached, it stays pending in the
//     broker, which delivers it again later. An event is acknowledged only
//     once it went to the dead-letter topic, never when that publish failed.
//
// Concurrency: the broker bounds the deliveries of each subscription (its
// concurrency), and the app channel bounds every call to the app, the
// invocations and the deliveries together (--app-max-concurrency); a
// delivery waits for a slot, its event held by the sidecar meanwhile.
//
// While the app is unhealthy the subscriptions are stopped, so that events
// wait in their brokers, not in the sidecar; they start again when it is
// healthy. When Run's ctx ends, reading stops, the deliveries in flight
// finish within the grace period, and the rest stay pending.
package subscribe
