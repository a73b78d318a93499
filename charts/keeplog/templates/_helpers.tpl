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

{{/* keeplog-api's pods: their own name, so the DaemonSet's selector (name, instance) never matches them. */}}
{{- define "keeplog.apiSelectorLabels" -}}
app.kubernetes.io/name: {{ include "keeplog.name" . }}-api
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: api
{{- end -}}

{{- define "keeplog.apiLabels" -}}
{{ include "keeplog.apiSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: keeplog
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The one name every node plugin's read-endpoint certificate holds (nodes are reached by IP, which a chart cannot
     know ahead of time): keeplog-api checks it with --node-server-name. */}}
{{- define "keeplog.nodeServerName" -}}
{{- printf "%s-node.%s" (include "keeplog.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/*
keeplog.retrievalTLS is the read path's CA and its two serving certificates as YAML (base64 PEM): kept from the
Secrets <fullname>-api-tls and <fullname>-node-tls when both exist with the same CA (lookup: upgrades keep them),
else made anew with genCA and genSignedCert. Include it once per render (each include outside a cluster makes a
new CA).
*/}}
{{- define "keeplog.retrievalTLS" -}}
{{- $full := include "keeplog.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $api := lookup "v1" "Secret" $ns (printf "%s-api-tls" $full) -}}
{{- $node := lookup "v1" "Secret" $ns (printf "%s-node-tls" $full) -}}
{{- $apiData := dig "data" dict $api -}}
{{- $nodeData := dig "data" dict $node -}}
{{- if and (index $apiData "ca.crt") (index $apiData "tls.crt") (index $apiData "tls.key") (index $nodeData "tls.crt") (index $nodeData "tls.key") (eq (index $apiData "ca.crt") (index $nodeData "ca.crt" | default "")) -}}
ca: {{ index $apiData "ca.crt" }}
apiCert: {{ index $apiData "tls.crt" }}
apiKey: {{ index $apiData "tls.key" }}
nodeCert: {{ index $nodeData "tls.crt" }}
nodeKey: {{ index $nodeData "tls.key" }}
{{- else -}}
{{- $days := int .Values.retrieval.certificateDays -}}
{{- $ca := genCA (printf "%s-retrieval-ca" $full) $days -}}
{{- $svc := printf "%s-api" $full -}}
{{- $apiCert := genSignedCert (printf "%s.%s.svc" $svc $ns) nil (list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns)) $days $ca -}}
{{- $nodeName := include "keeplog.nodeServerName" . -}}
{{- $nodeCert := genSignedCert $nodeName nil (list $nodeName) $days $ca -}}
ca: {{ $ca.Cert | b64enc }}
apiCert: {{ $apiCert.Cert | b64enc }}
apiKey: {{ $apiCert.Key | b64enc }}
nodeCert: {{ $nodeCert.Cert | b64enc }}
nodeKey: {{ $nodeCert.Key | b64enc }}
{{- end -}}
{{- end -}}
