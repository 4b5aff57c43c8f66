{{/* Names, labels and the pieces every pynomaly container shares. */}}

{{- define "pynomaly.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name, cut to 52 characters so "-worker-metrics" etc. still fit. */}}
{{- define "pynomaly.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "pynomaly.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pynomaly.labels" -}}
helm.sh/chart: {{ include "pynomaly.chart" . }}
{{ include "pynomaly.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "pynomaly.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pynomaly.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component: (dict "root" $ "component" "api"). */}}
{{- define "pynomaly.componentLabels" -}}
{{ include "pynomaly.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "pynomaly.componentSelector" -}}
{{ include "pynomaly.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "pynomaly.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pynomaly.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret the API and workers take their secrets from. */}}
{{- define "pynomaly.secretName" -}}
{{- default (include "pynomaly.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{- define "pynomaly.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}

{{/* Fixed paths inside the container. */}}
{{- define "pynomaly.dataDir" -}}/var/lib/pynomaly{{- end }}
{{- define "pynomaly.sourcesDir" -}}/var/lib/pynomaly/sources{{- end }}

{{/* The path of a file:// storage URL (where its claim is mounted). */}}
{{- define "pynomaly.storagePath" -}}
{{- trimPrefix "file://" .Values.storage.url }}
{{- end }}

{{/*
The settings every process reads (the ConfigMap's data). The migrate hook has its own copy,
made from this same definition, because hooks run before the release's ConfigMap exists.
*/}}
{{- define "pynomaly.configData" -}}
PYNOMALY_DATA_DIR: {{ include "pynomaly.dataDir" . | quote }}
PYNOMALY_SOURCES_DIR: {{ include "pynomaly.sourcesDir" . | quote }}
PYNOMALY_STORAGE_URL: {{ .Values.storage.url | quote }}
PYNOMALY_SHUTDOWN_TIMEOUT_S: {{ .Values.shutdownTimeoutSeconds | quote }}
{{- if hasPrefix "s3://" .Values.storage.url }}
{{- with .Values.storage.s3.endpoint }}
AWS_ENDPOINT_URL: {{ . | quote }}
{{- end }}
{{- with .Values.storage.s3.region }}
AWS_REGION: {{ . | quote }}
{{- end }}
{{- end }}
{{- range $name, $value := .Values.settings }}
{{ $name }}: {{ include "pynomaly.settingValue" $value | quote }}
{{- end }}
{{- end }}

{{/*
A setting as the text the service parses. YAML numbers reach templates as float64, which
print as 6.7108864e+07: whole numbers are printed as integers.
*/}}
{{- define "pynomaly.settingValue" -}}
{{- if and (kindIs "float64" .) (eq (floor .) .) }}
{{- int64 . }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/*
Seconds a pod may take to stop: the preStop pause, the drain, and 10 s for the process to
flush its telemetry and exit.
*/}}
{{- define "pynomaly.apiGracePeriod" -}}
{{- add .Values.api.preStopSleepSeconds .Values.shutdownTimeoutSeconds 10 }}
{{- end }}
{{- define "pynomaly.workerGracePeriod" -}}
{{- add .Values.shutdownTimeoutSeconds 10 }}
{{- end }}

{{- define "pynomaly.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{/* envFrom of the API and worker containers: the settings and the secrets. */}}
{{- define "pynomaly.envFrom" -}}
- configMapRef:
    name: {{ include "pynomaly.fullname" . }}
- secretRef:
    name: {{ include "pynomaly.secretName" . }}
{{- end }}

{{/* The writable paths of a read-only root filesystem, and the shared stores' claims. */}}
{{- define "pynomaly.volumeMounts" -}}
- name: data
  mountPath: {{ include "pynomaly.dataDir" . }}
{{- if .Values.sources.persistentVolumeClaim }}
- name: sources
  mountPath: {{ include "pynomaly.sourcesDir" . }}
  readOnly: true
{{- end }}
{{- if .Values.storage.persistentVolumeClaim }}
- name: storage
  mountPath: {{ include "pynomaly.storagePath" . }}
{{- end }}
{{- end }}

{{- define "pynomaly.volumes" -}}
- name: data
  emptyDir:
    sizeLimit: {{ .Values.dataDir.sizeLimit }}
{{- with .Values.sources.persistentVolumeClaim }}
- name: sources
  persistentVolumeClaim:
    claimName: {{ . }}
    readOnly: true
{{- end }}
{{- with .Values.storage.persistentVolumeClaim }}
- name: storage
  persistentVolumeClaim:
    claimName: {{ . }}
{{- end }}
{{- end }}

{{/* Values that cannot work together, refused at render time with what to change. */}}
{{- define "pynomaly.validate" -}}
{{- if and (hasPrefix "file://" .Values.storage.url) (not .Values.storage.persistentVolumeClaim) }}
{{- fail "storage.url is a file:// URL but storage.persistentVolumeClaim is empty: every instance and worker must see the same store (use s3://bucket/prefix, or name a ReadWriteMany claim)" }}
{{- end }}
{{- if and .Values.storage.persistentVolumeClaim (not (hasPrefix "file://" .Values.storage.url)) }}
{{- fail "storage.persistentVolumeClaim is set but storage.url is not a file:// URL: the claim is mounted at the URL's path" }}
{{- end }}
{{- range $component := list "api" "worker" }}
{{- $scaling := (index $.Values $component).autoscaling }}
{{- if and $scaling.enabled (gt (int $scaling.minReplicas) (int $scaling.maxReplicas)) }}
{{- fail (printf "%s.autoscaling.minReplicas (%v) is above maxReplicas (%v)" $component $scaling.minReplicas $scaling.maxReplicas) }}
{{- end }}
{{- end }}
{{- if and .Values.storage.persistentVolumeClaim (hasPrefix (printf "%s/" (include "pynomaly.dataDir" .)) (printf "%s/" (include "pynomaly.storagePath" .))) }}
{{- fail "storage.url's path must not be the data directory /var/lib/pynomaly (an emptyDir) or above it" }}
{{- end }}
{{- end }}

{{/*
The chart's Secret (base64 data), when secrets.existingSecret is empty. Keys left empty in
the values are generated at install (64 hex digits) and read back from the Secret on
upgrades, so API keys and sealed artifacts stay valid; `helm template` has no cluster to read
from and generates new ones on every run. Made once per render and kept in the values, so
the migrate hook's copy and the Secret hold the same keys.
*/}}
{{- define "pynomaly.secretData" -}}
{{- if not (hasKey .Values "__secretData") }}
{{- $current := dict }}
{{- with lookup "v1" "Secret" .Release.Namespace (include "pynomaly.fullname" .) }}
{{- $current = .data | default dict }}
{{- end }}
{{- $data := dict "DATABASE_URL" (.Values.database.url | b64enc) "REDIS_URL" (.Values.redis.url | b64enc) }}
{{- $generated := dict "PYNOMALY_SECRET_KEY" (.Values.secrets.secretKey) "PYNOMALY_ENCRYPTION_KEY" (.Values.secrets.encryptionKey) }}
{{- range $name, $given := $generated }}
{{- if $given }}
{{- $_ := set $data $name ($given | b64enc) }}
{{- else if hasKey $current $name }}
{{- $_ := set $data $name (get $current $name) }}
{{- else if or (eq $name "PYNOMALY_SECRET_KEY") $.Values.secrets.generateEncryptionKey }}
{{- $_ := set $data $name (randAlphaNum 64 | sha256sum | b64enc) }}
{{- end }}
{{- end }}
{{- $optional := dict "PYNOMALY_ENCRYPTION_OLD_KEYS" .Values.secrets.encryptionOldKeys "PYNOMALY_PII_HASH_KEY" .Values.secrets.piiHashKey "AWS_ACCESS_KEY_ID" .Values.secrets.awsAccessKeyId "AWS_SECRET_ACCESS_KEY" .Values.secrets.awsSecretAccessKey }}
{{- range $name, $value := $optional }}
{{- if $value }}
{{- $_ := set $data $name ($value | b64enc) }}
{{- end }}
{{- end }}
{{- $_ := set .Values "__secretData" $data }}
{{- end }}
{{- range $name, $value := .Values.__secretData }}
{{ $name }}: {{ $value | quote }}
{{- end }}
{{- end }}
