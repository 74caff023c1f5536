{{/* The injector's name, Service and webhook configuration. */}}
{{- define "tandem.injector" -}}{{ .Release.Name }}-injector{{- end -}}

{{- define "tandem.labels" -}}
app.kubernetes.io/part-of: tandem
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "tandem.injectorSelector" -}}
app.kubernetes.io/name: tandem-injector
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- /* The injector's labels: the common ones and its name. */ -}}
{{- define "tandem.injectorLabels" -}}
{{ include "tandem.labels" . }}
app.kubernetes.io/name: tandem-injector
{{- end -}}

{{- define "tandem.sidecarImage" -}}
{{ .Values.sidecar.image.repository }}:{{ .Values.sidecar.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "tandem.zipkinEndpoint" -}}
{{- if .Values.tracing.zipkinEndpoint -}}
{{ .Values.tracing.zipkinEndpoint }}
{{- else if .Values.zipkin.enabled -}}
http://{{ .Release.Name }}-zipkin.{{ .Release.Namespace }}.svc.{{ .Values.injector.clusterDomain }}:9411/api/v2/spans
{{- end -}}
{{- end -}}

{{- /* The Redis that Components use: the chart's, an external server, the
Sentinels of a master, or a cluster; one of them at most. */ -}}
{{- define "tandem.redisAddress" -}}
{{- $r := .Values.redis -}}
{{- $set := 0 -}}
{{- range list $r.enabled $r.externalAddress $r.sentinel.address $r.cluster.address -}}
{{- if . }}{{ $set = add1 $set }}{{ end -}}
{{- end -}}
{{- if gt $set 1 -}}
{{- fail "redis: set one of redis.enabled, redis.externalAddress, redis.sentinel.address and redis.cluster.address: they are four ways to name the one Redis the Components use" -}}
{{- end -}}
{{- if $r.externalAddress -}}
{{ $r.externalAddress }}
{{- else if $r.sentinel.address -}}
{{ $r.sentinel.address }}
{{- else if $r.cluster.address -}}
{{ $r.cluster.address }}
{{- else if $r.enabled -}}
{{ .Release.Name }}-redis.{{ .Release.Namespace }}.svc.{{ .Values.injector.clusterDomain }}:6379
{{- end -}}
{{- end -}}

{{- /* The connection metadata of a Redis Component (state.redis, pubsub.redis). */ -}}
{{- define "tandem.redisMetadata" -}}
{{- $r := .Values.redis -}}
- name: redisHost
  value: {{ include "tandem.redisAddress" . | quote }}
{{- if $r.sentinel.address }}
- name: failover
  value: "true"
- name: sentinelMasterName
  value: {{ $r.sentinel.masterName | quote }}
{{- else if $r.cluster.address }}
- name: redisType
  value: cluster
{{- end }}
{{- with $r.passwordSecret.name }}
- name: redisPassword
  secretKeyRef:
    name: {{ . }}
    key: {{ $r.passwordSecret.key }}
{{- end }}
{{- end -}}

{{- /* The Secrets sidecars may get: sidecar.secretNames and those the
chart's Components name, as a JSON list. */ -}}
{{- define "tandem.secretNames" -}}
{{- $names := concat .Values.sidecar.secretNames (compact (list .Values.redis.passwordSecret.name .Values.postgresql.connectionStringSecret.name)) | uniq -}}
{{- toJson $names -}}
{{- end -}}

{{- define "tandem.resources" -}}
{{- $r := . -}}
{{- if or $r.requests.cpu $r.requests.memory }}
requests:
  {{- with $r.requests.cpu }}
  cpu: {{ . | quote }}
  {{- end }}
  {{- with $r.requests.memory }}
  memory: {{ . | quote }}
  {{- end }}
{{- end }}
{{- if or $r.limits.cpu $r.limits.memory }}
limits:
  {{- with $r.limits.cpu }}
  cpu: {{ . | quote }}
  {{- end }}
  {{- with $r.limits.memory }}
  memory: {{ . | quote }}
  {{- end }}
{{- end }}
{{- end -}}
