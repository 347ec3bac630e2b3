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
{{- printf "tls://%s-scheduler:%d" (include "ta.fullname" .) (int .Values.scheduler.port) }}
{{- end }}

{{- define "ta.daskTlsSecretName" -}}
{{- default (printf "%s-dask-tls" (include "ta.fullname" .)) .Values.dask.tls.existingSecret }}
{{- end }}

{{/*
Dask TLS for one role (scheduler, worker or client), in distributed's own configuration variables: every
connection is TLS, and both ends show a certificate the cluster's CA signed. Takes a dict: root and role.
*/}}
{{- define "ta.daskTlsEnv" -}}
- name: DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION
  value: "True"
- name: DASK_DISTRIBUTED__COMM__TLS__CA_FILE
  value: {{ .root.Values.dask.tls.mountPath }}/ca.crt
- name: DASK_DISTRIBUTED__COMM__TLS__{{ upper .role }}__CERT
  value: {{ .root.Values.dask.tls.mountPath }}/tls.crt
- name: DASK_DISTRIBUTED__COMM__TLS__{{ upper .role }}__KEY
  value: {{ .root.Values.dask.tls.mountPath }}/tls.key
{{- end }}

{{/* A secret setting read from the Secret: the chart's, or the one you manage. Takes a dict: root, key, optional. */}}
{{- define "ta.secretEnv" -}}
- name: {{ .key }}
  valueFrom:
    secretKeyRef:
      name: {{ include "ta.secretName" .root }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end }}

{{/* The API's secrets: the read-only DSN when there is one (else the read-write one, which it says at start-up)
and the JWKS. */}}
{{- define "ta.apiSecretEnv" -}}
{{- $readOnly := ternary .Values.secret.existingSecretHasReadOnlyUrl .Values.secret.databaseRoUrl (ne .Values.secret.existingSecret "") }}
{{- include "ta.secretEnv" (dict "root" . "key" (ternary "DATABASE_RO_URL" "DATABASE_URL" (not (empty $readOnly)))) }}
{{ include "ta.secretEnv" (dict "root" . "key" "AUTH_JWKS" "optional" true) }}
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

{{/*
Volumes: a writable /tmp (the root filesystem is read-only), the optional shared data claim and, for the Dask
pods (daskTls), the cluster's certificates. Take a dict: root and daskTls.
*/}}
{{- define "ta.volumes" -}}
volumes:
  - name: tmp
    emptyDir: {}
  {{- if .root.Values.storage.existingClaim }}
  - name: data
    persistentVolumeClaim:
      claimName: {{ .root.Values.storage.existingClaim }}
  {{- end }}
  {{- if .daskTls }}
  - name: dask-tls
    secret:
      secretName: {{ include "ta.daskTlsSecretName" .root }}
      defaultMode: 0440
  {{- end }}
{{- end }}

{{- define "ta.volumeMounts" -}}
volumeMounts:
  - name: tmp
    mountPath: /tmp
  {{- if .root.Values.storage.existingClaim }}
  - name: data
    mountPath: {{ .root.Values.storage.mountPath }}
  {{- end }}
  {{- if .daskTls }}
  - name: dask-tls
    mountPath: {{ .root.Values.dask.tls.mountPath }}
    readOnly: true
  {{- end }}
{{- end }}

{{/* A container's image, security context and settings (the ConfigMap); each workload adds the secrets it uses. */}}
{{- define "ta.container" -}}
image: {{ include "ta.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
envFrom:
  - configMapRef:
      name: {{ include "ta.fullname" . }}-config
{{- end }}

{{/* Restart pods when the settings, or the chart-managed secrets they read, change. */}}
{{- define "ta.checksums" -}}
checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}

{{- define "ta.daskChecksums" -}}
checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/dask-tls: {{ include (print $.Template.BasePath "/dask-tls-secret.yaml") . | sha256sum }}
{{- end }}

{{/* Selects this release's pods of the given components. Takes a dict: root and components. */}}
{{- define "ta.podsOf" -}}
podSelector:
  matchExpressions:
    - key: app.kubernetes.io/name
      operator: In
      values: [{{ include "ta.name" .root | quote }}]
    - key: app.kubernetes.io/instance
      operator: In
      values: [{{ .root.Release.Name | quote }}]
    - key: app.kubernetes.io/component
      operator: In
      values: [{{ range $i, $c := .components }}{{ if $i }}, {{ end }}{{ $c | quote }}{{ end }}]
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
