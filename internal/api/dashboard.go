package api

// DashboardView is what the sidecar's read-only dashboard route (GET
// /v1.0/dashboard on the metrics port) answers: the part of its metadata
// the dashboard shows, under the same JSON names as GET /v1.0/metadata, and
// whether the app is ready. It holds no value an app or a resource set:
// of the extended metadata only the two keys the sidecar sets itself
// (mtlsSpiffeID, mtlsCertExpiry), of the components their name, type and
// version, of the subscriptions their pub/sub, topic, dead-letter topic and
// type (not their metadata or rules). No token, key or certificate is in it.
type DashboardView struct {
	ID                      string              `json:"id"`
	RuntimeVersion          string              `json:"runtimeVersion"`
	Mode                    string              `json:"mode"`
	Namespace               string              `json:"namespace,omitempty"`
	AppReady                bool                `json:"appReady"`
	Components              []Component         `json:"components"`
	Subscriptions           []Subscription      `json:"subscriptions"`
	AppConnectionProperties DashboardConnection `json:"appConnectionProperties"`
	Ports                   Ports               `json:"ports"`
	Extended                map[string]string   `json:"extended"`
	Resources               any                 `json:"resources,omitempty"`
}

// DashboardConnection is the app's port and protocol.
type DashboardConnection struct {
	Port     int    `json:"port,omitempty"`
	Protocol string `json:"protocol,omitempty"`
}

// Dashboard returns the dashboard's view of m.
func (m Metadata) Dashboard(appReady bool) DashboardView {
	v := DashboardView{
		ID: m.ID, RuntimeVersion: m.RuntimeVersion, Mode: m.Mode, Namespace: m.Namespace,
		AppReady:                appReady,
		Components:              make([]Component, 0, len(m.Components)),
		Subscriptions:           make([]Subscription, 0, len(m.Subscriptions)),
		AppConnectionProperties: DashboardConnection{Port: m.AppConnectionProperties.Port, Protocol: m.AppConnectionProperties.Protocol},
		Ports:                   m.Ports,
		Extended:                map[string]string{},
		Resources:               m.Resources,
	}
	for _, c := range m.Components {
		v.Components = append(v.Components, Component{Name: c.Name, Type: c.Type, Version: c.Version})
	}
	for _, s := range m.Subscriptions {
		v.Subscriptions = append(v.Subscriptions, Subscription{PubsubName: s.PubsubName, Topic: s.Topic, DeadLetterTopic: s.DeadLetterTopic, Type: s.Type})
	}
	for _, k := range []string{MTLSSpiffeIDKey, MTLSCertExpiryKey} {
		if val, ok := m.Extended[k]; ok {
			v.Extended[k] = val
		}
	}
	return v
}
