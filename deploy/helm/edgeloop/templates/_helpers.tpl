{{/* Chart name, for labels. */}}
{{- define "edgeloop.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The prefix of every object's name: release-chart, or the release alone when it holds the chart name. */}}
{{- define "edgeloop.fullname" -}}
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

{{/* A component's object name: <fullname>-<component>. Call with (list $ "exporter"). */}}
{{- define "edgeloop.componentName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "edgeloop.fullname" $root | trunc 50 | trimSuffix "-") (index . 1) -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "edgeloop.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "edgeloop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: edgeloop
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component. Call with (list $ "exporter"). */}}
{{- define "edgeloop.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "edgeloop.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* All labels of one component's objects. Call with (list $ "exporter"). */}}
{{- define "edgeloop.componentLabels" -}}
{{ include "edgeloop.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* A component's image reference; the tag defaults to the chart's appVersion. Call with (list $ .Values.exporter.image). */}}
{{- define "edgeloop.image" -}}
{{- $root := index . 0 -}}
{{- $image := index . 1 -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}

{{/* Where the component Secrets are mounted; the configurations name files under it. */}}
{{- define "edgeloop.secretsDir" -}}/etc/edgeloop/secrets{{- end -}}

{{/* The S3 credentials Secret's name, or "" when there is none. */}}
{{- define "edgeloop.s3SecretName" -}}
{{- if .Values.s3.existingSecret -}}
{{- .Values.s3.existingSecret -}}
{{- else if .Values.s3.accessKeyID -}}
{{- include "edgeloop.componentName" (list . "s3") -}}
{{- end -}}
{{- end -}}

{{/* A component's auth Secret name (existingSecret or the chart's). Call with (list $ "collector"). */}}
{{- define "edgeloop.authSecretName" -}}
{{- $root := index . 0 -}}
{{- $auth := (index $root.Values (index . 1)).auth -}}
{{- default (include "edgeloop.componentName" (list $root (printf "%s-auth" (index . 1)))) $auth.existingSecret -}}
{{- end -}}

{{/* The exporter's configuration: the chart's keys, then exporter.config over them. */}}
{{- define "edgeloop.exporterConfig" -}}
{{- $base := dict
  "node" "${NODE_NAME}"
  "log" (dict "format" "json")
  "metrics" (dict "listen" (printf ":%d" (int .Values.exporter.service.port)))
  "gpu" (dict "kubernetes" (dict "pod_attribution" .Values.exporter.podResources.enabled "socket" (printf "%s/kubelet.sock" .Values.exporter.podResources.hostPath)))
  "model_sync" (dict "cache_dir" "/var/lib/edgeloop/models")
  "capture" (dict "spool" (dict "dir" "/var/lib/edgeloop/spool") "sender" (dict "dead_letter_dir" "/var/lib/edgeloop/deadletter"))
-}}
{{- if or .Values.exporter.auth.existingSecret .Values.exporter.auth.nodeToken -}}
{{- $_ := set $base.capture.sender "token_file" (printf "%s/node.token" (include "edgeloop.secretsDir" .)) -}}
{{- end -}}
{{- toYaml (mustMergeOverwrite $base (deepCopy .Values.exporter.config)) -}}
{{- end -}}

{{/* The collector's configuration. */}}
{{- define "edgeloop.collectorConfig" -}}
{{- $secrets := include "edgeloop.secretsDir" . -}}
{{- $base := dict
  "instance" "${POD_NAME}"
  "listen" (printf ":%d" (int .Values.collector.service.port))
  "log" (dict "format" "json")
  "auth" (dict "tokens_file" (printf "%s/nodes.sha256" $secrets) "operator_tokens_file" (printf "%s/operators.sha256" $secrets))
  "wal" (dict "dir" "/var/lib/edgeloop/collector/wal")
-}}
{{- $config := mustMergeOverwrite $base (deepCopy .Values.collector.config) -}}
{{- if not $config.bucket -}}
{{- fail "collector.config.bucket is required (s3://bucket?endpoint=host:port)" -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/* The retrain controller's configuration. */}}
{{- define "edgeloop.retrainConfig" -}}
{{- $secrets := include "edgeloop.secretsDir" . -}}
{{- $dataset := dict "token_file" (printf "%s/collector-operator.token" $secrets) -}}
{{- if .Values.collector.enabled -}}
{{- /* In-cluster plain http to this release's collector: the token may cross it (say so in docs). */ -}}
{{- $_ := set $dataset "collector_url" (printf "http://%s:%d" (include "edgeloop.componentName" (list . "collector")) (int .Values.collector.service.port)) -}}
{{- $_ := set $dataset "allow_insecure_token" true -}}
{{- end -}}
{{- $base := dict
  "listen" (printf ":%d" (int .Values.retrain.service.port))
  "log" (dict "format" "json")
  "state_dir" "/var/lib/edgeloop/retrain"
  "auth" (dict "webhook_tokens_file" (printf "%s/retrain-webhook.sha256" $secrets) "operator_tokens_file" (printf "%s/retrain-operator.sha256" $secrets))
  "repository" (dict "signing_key_file" (printf "%s/edgeloop.key" $secrets))
  "dataset" $dataset
  "backend" (dict "type" "kubernetes" "kubernetes" (dict "namespace" (default .Release.Namespace .Values.retrain.jobNamespace) "image" (include "edgeloop.image" (list . .Values.retrain.image))))
-}}
{{- $config := mustMergeOverwrite $base (deepCopy .Values.retrain.config) -}}
{{- if not (($config.repository).bucket) -}}
{{- fail "retrain.config.repository.bucket is required (s3://bucket?endpoint=host:port)" -}}
{{- end -}}
{{- if not $config.models -}}
{{- fail "retrain.config.models is required: the models this controller retrains" -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}
