// Package subscribe delivers the events of the app's subscriptions to the
// app, as daprd does. This part reads subscriptions: the app's own (GET
// /dapr/subscribe, ListTopicSubscriptions) and their routing rules.
package subscribe
