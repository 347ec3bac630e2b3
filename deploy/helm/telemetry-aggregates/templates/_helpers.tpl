{{/* Names, labels and the pieces every pod shares. */}}

{{- define "ta.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ta.fullname" -}}
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

{{/* Helm's recommended labels; "ta.labels" takes a dict: root (the chart's context) and component. */}}
{{- define "ta.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ta.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "ta.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ta.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: telemetry-aggregates
{{- end }}

{{- define "ta.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "ta.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ta.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ta.secretName" -}}
{{- default (printf "%s-secrets" (include "ta.fullname" .)) .Values.secret.existingSecret }}
{{- end }}

{{- define "ta.schedulerAddress" -}}
{{- printf "tcp://%s-scheduler:%d" (include "ta.fullname" .) (int .Values.scheduler.port) }}
{{- end }}

{{/* Pod-level settings every workload shares. */}}
{{- define "ta.podSpec" -}}
serviceAccountName: {{ include "ta.serviceAccountName" . }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Volumes: a writable /tmp (the root filesystem is read-only) and the optional shared data claim. */}}
{{- define "ta.volumes" -}}
volumes:
  - name: tmp
    emptyDir: {}
  {{- if .Values.storage.existingClaim }}
  - name: data
    persistentVolumeClaim:
      claimName: {{ .Values.storage.existingClaim }}
  {{- end }}
{{- end }}

{{- define "ta.volumeMounts" -}}
volumeMounts:
  - name: tmp
    mountPath: /tmp
  {{- if .Values.storage.existingClaim }}
  - name: data
    mountPath: {{ .Values.storage.mountPath }}
  {{- end }}
{{- end }}

{{/* A container's image, security context and settings (the ConfigMap, then the Secret). */}}
{{- define "ta.container" -}}
image: {{ include "ta.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
envFrom:
  - configMapRef:
      name: {{ include "ta.fullname" . }}-config
  - secretRef:
      name: {{ include "ta.secretName" . }}
{{- end }}

{{/* Restart pods when the settings or the chart-managed secret change. */}}
{{- define "ta.checksums" -}}
checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}

{{/* `aggregator run`'s options after --date: input, snapshot, scheduler and the configured extras. */}}
{{- define "ta.runArgs" -}}
- --input
- {{ required "job.input (the pings' hive root) is required" .Values.job.input | quote }}
- --snapshot
- {{ required "job.snapshot (the zarr snapshot URL) is required" .Values.job.snapshot | quote }}
- --scheduler
- {{ include "ta.schedulerAddress" . | quote }}
- --no-progress
{{- with .Values.job.channels }}
- --channels
- {{ join "," . | quote }}
{{- end }}
{{- with .Values.job.maxBadFraction }}
- --max-bad-fraction
- {{ . | quote }}
{{- end }}
{{- if .Values.job.skipUnreadable }}
- --skip-unreadable
{{- end }}
{{- range .Values.job.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}
