{{/* Chart name, shortened to 63 characters. */}}
{{- define "vod-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name when it already contains the chart name. */}}
{{- define "vod-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels selecting the operator pod (identical to the kustomize manifests'). */}}
{{- define "vod-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vod-operator.name" . }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "vod-operator.labels" -}}
{{ include "vod-operator.selectorLabels" . }}
app.kubernetes.io/part-of: vod-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "vod-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vod-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}
