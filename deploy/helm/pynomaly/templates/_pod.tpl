{{/* Pod-template annotations: a change of settings or secrets rolls the pods. */}}
{{- define "pynomaly.checksums" -}}
checksum/config: {{ include "pynomaly.configData" . | sha256sum }}
checksum/secret: {{ dict "secrets" .Values.secrets "database" .Values.database "redis" .Values.redis | toJson | sha256sum }}
{{- end }}
