{{/* Names and labels shared by every template. */}}

{{- define "aegis.name" -}}
{{- default "data-pipeline" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "aegis.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "aegis.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "aegis.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "aegis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aegis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "aegis.labels" -}}
{{ include "aegis.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: aegis
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "aegis.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "aegis.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "aegis.fullname" .)) -}}
{{- end -}}

{{/* Settings as environment variables: the ConfigMap (plain values) and the Secret (passwords, source keys). */}}
{{- define "aegis.envFrom" -}}
- configMapRef:
    name: {{ include "aegis.fullname" . }}-settings
- secretRef:
    name: {{ include "aegis.secretName" . }}
{{- end -}}

{{/* The engines' CA (`tls.caSecret`): where it is mounted, the volume and its mount (each pod that connects). */}}
{{- define "aegis.caFile" -}}
/etc/aegis-tls/ca.crt
{{- end -}}

{{- define "aegis.caVolume" -}}
- name: engines-ca
  secret:
    secretName: {{ .Values.tls.caSecret }}
    items:
      - key: ca.crt
        path: ca.crt
{{- end -}}

{{- define "aegis.caVolumeMount" -}}
- name: engines-ca
  mountPath: {{ dir (include "aegis.caFile" .) }}
  readOnly: true
{{- end -}}

{{/* Non-root, read-only root filesystem, no privilege escalation, no capabilities. */}}
{{- define "aegis.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "aegis.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* A restart when the settings change: the pods read them only at start. */}}
{{- define "aegis.configChecksum" -}}
checksum/settings: {{ include (print $.Template.BasePath "/settings.yaml") . | sha256sum }}
{{- end -}}
