{{/* Name of the chart, or nameOverride. */}}
{{- define "keeplog.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: fullnameOverride, else the release name when it already contains the chart name, else both. */}}
{{- define "keeplog.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "keeplog.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keeplog.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "keeplog.labels" -}}
{{ include "keeplog.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: keeplog
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "keeplog.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "keeplog.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag or repository@digest of an image block; tag defaults to the chart's appVersion. */}}
{{- define "keeplog.image" -}}
{{- $img := index . 0 -}}
{{- $root := index . 1 -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default $root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* The directory of the CSI socket on the node, as kubelet sees it. */}}
{{- define "keeplog.socketDir" -}}
{{- printf "%s/plugins/%s" (trimSuffix "/" .Values.kubelet.dir) .Values.driverName -}}
{{- end -}}

{{- define "keeplog.registrationDir" -}}
{{- default (printf "%s/plugins_registry" (trimSuffix "/" .Values.kubelet.dir)) .Values.kubelet.registrationDir -}}
{{- end -}}

{{/* Environment shared by every container that talks to the API server. */}}
{{- define "keeplog.apiEnv" -}}
{{- if .Values.apiServer.host }}
- name: KUBERNETES_SERVICE_HOST
  value: {{ .Values.apiServer.host | quote }}
- name: KUBERNETES_SERVICE_PORT
  value: {{ required "apiServer.port is required with apiServer.host" .Values.apiServer.port | toString | quote }}
{{- end }}
{{- end -}}

{{/*
keeplog.graceHostDir fails the render unless keeplog.root and keeplog.podLogsDir are both below
keeplog.stdoutGrace.hostDir (the stdout grace hard-links across them, which works only within one mount).
*/}}
{{- define "keeplog.graceHostDir" -}}
{{- $dir := trimSuffix "/" .Values.keeplog.stdoutGrace.hostDir -}}
{{- range $name, $path := dict "keeplog.root" .Values.keeplog.root "keeplog.podLogsDir" .Values.keeplog.podLogsDir -}}
{{- if not (hasPrefix (printf "%s/" $dir) $path) -}}
{{- fail (printf "keeplog.stdoutGrace.enabled needs %s (%s) below keeplog.stdoutGrace.hostDir (%s): kubelet's files are hard-linked into the root, which works only within one mount" $name $path $dir) -}}
{{- end -}}
{{- end -}}
{{- end -}}
