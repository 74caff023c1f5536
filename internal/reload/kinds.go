package reload

import (
	"github.com/tandem-run/tandem/internal/components"
	"github.com/tandem-run/tandem/internal/kube"
)

// kind is a kind of resource: its reconciler, and where it is read. The
// sources of an origin that several kinds read (the folders) are taken
// whole by all of them: each stages its part, in the order of the kinds.
type kind struct {
	rec   reconciler
	files origin     // originFiles or originConfigFile
	kube  kubeSource // zero: not read from the API server
}

// kubeSource is how a kind is read from the API server: listed at start,
// then watched.
type kubeSource struct {
	res    kube.Resource
	origin origin // names the list and the watch in errors
	// optional: without its CRD, or the RBAC to read it (a chart older
	// than the sidecar), the kind is read from files only, as the log says.
	optional bool
	// named: only the object --config names (Sources.ConfigName; none when
	// ""). It must exist at start, and once deleted the one read last
	// stays in force.
	named bool
}

// newKinds are the kinds of resource the sidecar keeps in force, in the
// order they stage a source and are applied, and the handlers of the
// families of component types. A new kind is a reconciler in a file of
// its own, with its tests, and a line here: where it is read from (the API
// server's objects are listed, watched, refused and counted from this
// line); a new family of component types (state.*, pubsub.*) is a
// familyTarget (what it builds, and what it puts that in force on) in a
// file of its own and a line in types. It keeps the reconcilers the
// Reloader asks for the Configuration in force and the Secrets Components
// read.
func (r *Reloader) newKinds(src Sources) []kind {
	mws := newMiddlewares(r.secrets, r.log, r.m)
	types := map[string]componentType{
		"middleware": mws,
		"state":      newStores(r.secrets, r.log, r.m, src.PingTimeout, src.DefaultStore),
		"pubsub":     newPubSubs(r.secrets, r.log, r.m, src.PingTimeout, components.Env{AppID: src.AppID, Namespace: src.Namespace, PodName: src.PodName, Logger: src.ComponentLogger}),
	}
	r.comps = newComponentKind(src.AppID, src.Namespace, r.log, types)
	r.conf = newConfigurationKind(src.Namespace, r.log)
	mws.conf = r.conf.current
	r.conf.pipelines = mws
	r.conf.components = r.comps.lookup
	return []kind{
		{rec: r.comps, files: originFiles, kube: kubeSource{res: kube.Components, origin: "Components of the API server"}},
		{rec: newResiliencyKind(src.AppID, r.log), files: originFiles,
			kube: kubeSource{res: kube.Resiliencies, origin: "Resiliency resources of the API server", optional: true}},
		{rec: newSubscriptionKind(src.AppID, r.log), files: originFiles,
			kube: kubeSource{res: kube.Subscriptions, origin: "Subscriptions of the API server", optional: true}},
		{rec: r.conf, files: originConfigFile,
			kube: kubeSource{res: kube.Configurations, origin: "--config (the API server's Configuration)", named: true}},
	}
}

// readers are the kinds that read each origin, as the differ takes them.
func readers(kinds []kind, configName string) map[origin]reader {
	out := map[origin]reader{}
	for _, k := range kinds {
		rd := out[k.files]
		rd.kinds = append(rd.kinds, k.rec)
		out[k.files] = rd
		if k.kube.origin != "" {
			rd := reader{kinds: []reconciler{k.rec}}
			if k.kube.named {
				rd.one = configName
			}
			out[k.kube.origin] = rd
		}
	}
	return out
}
