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

{{/* Kafka transport security for every client (the services and the topics hook). */}}
{{- define "distillery.kafkaSecurityEnv" -}}
{{- $k := .Values.kafka }}
{{- if and $k.sasl.enabled (not (hasPrefix "SASL_" $k.securityProtocol)) }}
{{- fail "kafka.sasl.enabled needs kafka.securityProtocol SASL_SSL (or SASL_PLAINTEXT)" }}
{{- end }}
{{- if ne $k.securityProtocol "PLAINTEXT" }}
- name: DISTILLERY_KAFKA_SECURITY_PROTOCOL
  value: {{ $k.securityProtocol | quote }}
{{- end }}
{{- if $k.tls.caSecret }}
- name: DISTILLERY_KAFKA_SSL_CAFILE
  value: /etc/distillery/kafka-tls/ca.crt
{{- if $k.tls.clientCertificate }}
- name: DISTILLERY_KAFKA_SSL_CERTFILE
  value: /etc/distillery/kafka-tls/tls.crt
- name: DISTILLERY_KAFKA_SSL_KEYFILE
  value: /etc/distillery/kafka-tls/tls.key
{{- end }}
{{- end }}
{{- end -}}

{{- define "distillery.kafkaTlsMount" -}}
{{- if .Values.kafka.tls.caSecret }}
- name: kafka-tls
  mountPath: /etc/distillery/kafka-tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "distillery.kafkaTlsVolume" -}}
{{- if .Values.kafka.tls.caSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.caSecret }}
{{- end }}
{{- end -}}

{{/* S3 endpoint, region and credentials of an object-store registry (AWS SDK variables, read by s3fs). */}}
{{- define "distillery.registryS3Env" -}}
{{- $r := .Values.services.trainer.registry }}
{{- if $r.uri }}
{{- with $r.s3.endpoint }}
- name: AWS_ENDPOINT_URL_S3
  value: {{ . | quote }}
{{- end }}
{{- with $r.s3.region }}
- name: AWS_DEFAULT_REGION
  value: {{ . | quote }}
{{- end }}
{{- if $r.s3.existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef: {name: {{ $r.s3.existingSecret }}, key: AWS_ACCESS_KEY_ID}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ $r.s3.existingSecret }}, key: AWS_SECRET_ACCESS_KEY}
{{- end }}
{{- end }}
{{- end -}}
