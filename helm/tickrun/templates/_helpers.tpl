{{/* The chart's name, 63 characters at most (a DNS label). */}}
{{- define "tickrun.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name: <release> or <release>-<chart>, 63 characters at most; the
suffixes of the components ("-api", "-controller") are cut from a 52-character base. */}}
{{- define "tickrun.fullname" -}}
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

{{- define "tickrun.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object; "component" is added per object. */}}
{{- define "tickrun.labels" -}}
helm.sh/chart: {{ include "tickrun.chart" . }}
{{ include "tickrun.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tickrun
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "tickrun.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tickrun.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tickrun.apiName" -}}{{ include "tickrun.fullname" . }}-api{{- end }}
{{- define "tickrun.controllerName" -}}{{ include "tickrun.fullname" . }}-controller{{- end }}

{{- define "tickrun.apiServiceAccount" -}}
{{- if .Values.serviceAccount.api.create }}
{{- default (include "tickrun.apiName" .) .Values.serviceAccount.api.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.api.name }}
{{- end }}
{{- end }}

{{- define "tickrun.controllerServiceAccount" -}}
{{- if .Values.serviceAccount.controller.create }}
{{- default (include "tickrun.controllerName" .) .Values.serviceAccount.controller.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.controller.name }}
{{- end }}
{{- end }}

{{- define "tickrun.image" -}}
{{- $img := index .root.Values.image .which -}}
{{- if $img.digest }}{{ $img.repository }}@{{ $img.digest }}{{ else }}{{ $img.repository }}:{{ default .root.Chart.AppVersion $img.tag }}{{ end }}
{{- end }}

{{/* Secrets: only their names and keys are in the chart; Kubernetes injects the values. */}}
{{- define "tickrun.secretEnv" -}}
- name: TICKRUN_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.database.existingSecret }}
      key: {{ .Values.secrets.database.key }}
- name: TICKRUN_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.redis.existingSecret }}
      key: {{ .Values.secrets.redis.key }}
{{- end }}

{{/* The market data keys by secretKeyRef, for the API (the controller gives run pods
the same through TICKRUN_K8S_*_SECRET). */}}
{{- define "tickrun.marketDataSecretEnv" -}}
{{- $md := .Values.secrets.marketData }}
{{- range list (list "TICKRUN_POLYGON_API_KEY" $md.polygon) (list "TICKRUN_ALPACA_API_KEY_ID" $md.alpacaKeyId) (list "TICKRUN_ALPACA_API_SECRET_KEY" $md.alpacaSecretKey) }}
{{- $ref := index . 1 }}
- name: {{ index . 0 }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.existingSecret }}
      key: {{ $ref.key }}
      {{- if $ref.optional }}
      optional: true
      {{- end }}
{{- end }}
{{- end }}

{{/* A market data key's reference as KubernetesSettings reads it (JSON). */}}
{{- define "tickrun.secretRefJson" -}}
{{- dict "name" .existingSecret "key" .key "optional" (.optional | default false) | toJson }}
{{- end }}

{{/* The non-secret market data settings (name: value); empty values are left out, so
the runner's defaults apply. */}}
{{- define "tickrun.marketDataEnv" -}}
{{- $md := .Values.marketData -}}
{{- $env := dict "TICKRUN_ALPACA_FEED" $md.alpaca.feed "TICKRUN_MARKET_DATA_FETCH_DEADLINE_SECONDS" (toString $md.fetchDeadlineSeconds) -}}
{{- with $md.provider }}{{ $_ := set $env "TICKRUN_MARKET_DATA_PROVIDER" . }}{{ end -}}
{{- with $md.polygon.baseUrl }}{{ $_ := set $env "TICKRUN_POLYGON_BASE_URL" . }}{{ end -}}
{{- with $md.alpaca.dataUrl }}{{ $_ := set $env "TICKRUN_ALPACA_DATA_URL" . }}{{ end -}}
{{- toJson $env -}}
{{- end }}

{{- define "tickrun.llmSpendEnv" -}}
{{- $s := .Values.llmSpend -}}
{{- $env := dict -}}
{{- with $s.userDailyCostUsd }}{{ $_ := set $env "TICKRUN_USER_DAILY_COST_USD" (toString .) }}{{ end -}}
{{- with $s.runMaxCostUsd }}{{ $_ := set $env "TICKRUN_RUNNER_MAX_COST_USD" (toString .) }}{{ end -}}
{{- with $s.runMaxTokens }}{{ $_ := set $env "TICKRUN_RUNNER_MAX_TOKENS" (toString .) }}{{ end -}}
{{- with $s.requestsPerMinute }}{{ $_ := set $env "TICKRUN_LLM_REQUESTS_PER_MINUTE" (toString .) }}{{ end -}}
{{- with $s.tokensPerMinute }}{{ $_ := set $env "TICKRUN_LLM_TOKENS_PER_MINUTE" (toString .) }}{{ end -}}
{{- with $s.prices }}{{ $_ := set $env "TICKRUN_LLM_PRICES" (toJson .) }}{{ end -}}
{{- toJson $env -}}
{{- end }}

{{- define "tickrun.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "tickrun.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* The settings ConfigMap's checksum: a changed setting rolls the pods. */}}
{{- define "tickrun.configChecksum" -}}
{{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- end }}
