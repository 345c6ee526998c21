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

{{/* A value as the environment or a quantity takes it: a whole number as digits. Helm reads the numbers of values
as floats, which `toString` would write as 1.6e+07. */}}
{{- define "aegis.plain" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) -}}
{{- . | int64 -}}
{{- else -}}
{{- . | toString -}}
{{- end -}}
{{- end -}}

{{/* The hot path's replicas: the fewest it runs (autoscaling.minReplicas, or replicas without autoscaling), and
the most the autoscaler may run: maxReplicas capped at the raw topic's partitions (kafka.topicPartitions), as a
replica beyond them gets no partition and consumes nothing. */}}
{{- define "aegis.hotPath.fewestReplicas" -}}
{{- if .Values.hotPath.autoscaling.enabled -}}
{{- .Values.hotPath.autoscaling.minReplicas | int -}}
{{- else -}}
{{- .Values.hotPath.replicas | int -}}
{{- end -}}
{{- end -}}

{{- define "aegis.hotPath.maxReplicas" -}}
{{- min (.Values.hotPath.autoscaling.maxReplicas | int) (.Values.kafka.topicPartitions | int) -}}
{{- end -}}

{{/* Hot-path values that cannot work together stop the rendering; NOTES.txt warns of the merely risky ones. */}}
{{- define "aegis.hotPath.check" -}}
{{- $hot := .Values.hotPath -}}
{{- $partitions := .Values.kafka.topicPartitions | int -}}
{{- if $hot.autoscaling.enabled -}}
{{- $min := $hot.autoscaling.minReplicas | int -}}
{{- $max := $hot.autoscaling.maxReplicas | int -}}
{{- if gt $min $max -}}
{{- fail (printf "hotPath.autoscaling.minReplicas (%d) is above hotPath.autoscaling.maxReplicas (%d)" $min $max) -}}
{{- end -}}
{{- if gt $min $partitions -}}
{{- fail (printf "hotPath.autoscaling.minReplicas (%d) is above kafka.topicPartitions (%d): a hot-path replica beyond the raw topic's partitions consumes nothing. Lower minReplicas, or give the topic more partitions and set kafka.topicPartitions to their number" $min $partitions) -}}
{{- end -}}
{{- end -}}
{{- $fewest := include "aegis.hotPath.fewestReplicas" . | int -}}
{{- $minAvailable := $hot.podDisruptionBudget.minAvailable | int -}}
{{- if and (gt $fewest 1) (ge $minAvailable $fewest) -}}
{{- fail (printf "hotPath.podDisruptionBudget.minAvailable (%d) must be below the hot path's %d replicas (%s): a PodDisruptionBudget that allows no disruption blocks every node drain" $minAvailable $fewest (ternary "hotPath.autoscaling.minReplicas" "hotPath.replicas" $hot.autoscaling.enabled)) -}}
{{- end -}}
{{- end -}}
