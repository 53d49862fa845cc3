{{/* Chart name, release-scoped resource names and labels. */}}
{{- define "distillery.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "distillery.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Kubernetes name of one service: <fullname>-<service with dashes>. Call with (dict "root" $ "svc" "oracle_gateway"). */}}
{{- define "distillery.svcname" -}}
{{- printf "%s-%s" (include "distillery.fullname" .root) (.svc | replace "_" "-") | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "distillery.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "distillery.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: distillery
{{- end -}}

{{- define "distillery.selectorLabels" -}}
app.kubernetes.io/name: {{ include "distillery.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .svc | replace "_" "-" }}
{{- end -}}

{{- define "distillery.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "distillery.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "distillery.image" -}}
{{- $gpu := and .cfg.gpu .cfg.gpu.enabled -}}
{{- printf "%s/%s-%s:%s%s" .root.Values.image.registry .root.Values.image.repositoryPrefix (.svc | replace "_" "-") .root.Values.image.tag (ternary "-cuda" "" (not (not $gpu))) -}}
{{- end -}}

{{- define "distillery.providerSecretName" -}}
{{- default (printf "%s-provider-keys" (include "distillery.fullname" .)) .Values.providerKeys.existingSecret -}}
{{- end -}}

{{- define "distillery.authSecretName" -}}
{{- default (printf "%s-grpc-auth" (include "distillery.fullname" .)) .Values.security.auth.existingSecret -}}
{{- end -}}

{{- define "distillery.kafkaSecretName" -}}
{{- default (printf "%s-kafka" (include "distillery.fullname" .)) .Values.kafka.sasl.existingSecret -}}
{{- end -}}

{{- define "distillery.postgresSecretName" -}}
{{- default (printf "%s-postgres" (include "distillery.fullname" .)) .Values.postgres.existingSecret -}}
{{- end -}}

{{- define "distillery.redisSecretName" -}}
{{- default (printf "%s-redis" (include "distillery.fullname" .)) .Values.redis.existingSecret -}}
{{- end -}}

{{- define "distillery.registryClaim" -}}
{{- default (printf "%s-registry" (include "distillery.fullname" .)) .Values.services.trainer.registry.existingClaim -}}
{{- end -}}

{{/* The gRPC health check, for exec probes when TLS is on (kubelet's grpc probe cannot speak TLS). */}}
{{- define "distillery.healthExec" -}}
- python
- -c
- |
  import sys, grpc
  from grpc_health.v1 import health_pb2 as p, health_pb2_grpc as g
  read = lambda name: open("/etc/distillery/tls/" + name, "rb").read()
  # The pod's own certificate doubles as the client certificate when mTLS is required.
  creds = grpc.ssl_channel_credentials(read("ca.crt"), private_key=read("tls.key"), certificate_chain=read("tls.crt"))
  channel = grpc.secure_channel("127.0.0.1:{{ .port }}", creds, options=[("grpc.ssl_target_name_override", "{{ .host }}")])
  reply = g.HealthStub(channel).Check(p.HealthCheckRequest(), timeout=3)
  sys.exit(0 if reply.status == p.HealthCheckResponse.SERVING else 1)
{{- end -}}
