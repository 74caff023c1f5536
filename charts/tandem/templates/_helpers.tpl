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

{{- define "tandem.redisAddress" -}}
{{- if .Values.redis.externalAddress -}}
{{ .Values.redis.externalAddress }}
{{- else if .Values.redis.enabled -}}
{{ .Release.Name }}-redis.{{ .Release.Namespace }}.svc.{{ .Values.injector.clusterDomain }}:6379
{{- end -}}
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
