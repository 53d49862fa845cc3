{{/*
Pods of the training Ray cluster (RayCluster and RayJob): the trainer image, the model cache and the registry's
storage on every node (Ray Train writes checkpoints there), offline models, and a disk-backed /tmp for Ray's logs
and spilled objects (the object store itself lives in /dev/shm).
*/}}

{{- define "distillery.ray.modelCacheEnv" -}}
{{- $mc := .Values.services.trainer.ray.modelCache }}
{{- if $mc.uri }}
- name: DISTILLERY_MODEL_CACHE
  value: {{ $mc.uri | quote }}
{{- else if $mc.existingClaim }}
- name: DISTILLERY_MODEL_CACHE
  value: {{ $mc.mountPath | quote }}
{{- end }}
{{- end -}}

{{- define "distillery.ray.modelCacheMount" -}}
{{- $mc := .Values.services.trainer.ray.modelCache }}
{{- if and $mc.existingClaim (not $mc.uri) }}
- name: model-cache
  mountPath: {{ $mc.mountPath }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "distillery.ray.modelCacheVolume" -}}
{{- $mc := .Values.services.trainer.ray.modelCache }}
{{- if and $mc.existingClaim (not $mc.uri) }}
- name: model-cache
  persistentVolumeClaim:
    claimName: {{ $mc.existingClaim }}
    readOnly: true
{{- end }}
{{- end -}}

{{/* One Ray node's pod template. Call with (dict "root" $ "role" "head"|"worker" "gpu" N "resources" R "job" bool) */}}
{{- define "distillery.ray.pod" -}}
{{- $root := .root }}
{{- $t := $root.Values.services.trainer }}
{{- $gpu := int (.gpu | default 0) }}
metadata:
  labels:
    app.kubernetes.io/part-of: distillery
    app.kubernetes.io/instance: {{ $root.Release.Name }}
    app.kubernetes.io/component: ray-{{ .role }}
spec:
  serviceAccountName: {{ include "distillery.serviceAccountName" $root }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  {{- if gt $gpu 0 }}
  runtimeClassName: {{ $t.gpu.runtimeClassName }}
  nodeSelector:
    {{- toYaml $t.gpu.nodeSelector | nindent 4 }}
  tolerations:
    {{- toYaml $t.gpu.tolerations | nindent 4 }}
  {{- end }}
  containers:
    - name: ray-{{ .role }}
      image: {{ include "distillery.image" (dict "root" $root "svc" "trainer" "cfg" (dict "gpu" (dict "enabled" (gt $gpu 0)))) }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy | default "IfNotPresent" }}
      securityContext:
        {{- toYaml $root.Values.containerSecurityContext | nindent 8 }}
      env:
        - name: RAY_AUTH_MODE
          value: disabled
        - name: HF_HUB_OFFLINE
          value: "1"
        - name: TRANSFORMERS_OFFLINE
          value: "1"
        - name: TOKENIZERS_PARALLELISM
          value: "false"
        - name: HOME
          value: /tmp
        - name: NUMBA_CACHE_DIR
          value: /tmp/numba
        - name: DISTILLERY_REGISTRY_URI
          value: {{ $t.registry.uri | default "/registry" | quote }}
        {{- include "distillery.registryS3Env" $root | trim | nindent 8 }}
        {{- include "distillery.ray.modelCacheEnv" $root | trim | nindent 8 }}
        {{- if and .job (or $root.Values.postgres.existingSecret $root.Values.postgres.dsn) }}
        - name: DISTILLERY_LABEL_STORE_URL
          valueFrom:
            secretKeyRef: {name: {{ include "distillery.postgresSecretName" $root }}, key: dsn}
        {{- end }}
      resources:
        {{- $res := deepCopy (.resources | default dict) }}
        {{- if gt $gpu 0 }}
        {{- $_ := set $res "limits" (merge (dict "nvidia.com/gpu" $gpu) ($res.limits | default dict)) }}
        {{- end }}
        {{- toYaml $res | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        - name: dshm
          mountPath: /dev/shm
        {{- if not $t.registry.uri }}
        - name: registry
          mountPath: /registry
        {{- end }}
        {{- include "distillery.ray.modelCacheMount" $root | trim | nindent 8 }}
        {{- if and .job $root.Values.filters.enabled }}
        - name: filters
          mountPath: /app/filters
          readOnly: true
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: {{ $t.ray.kuberay.tmpSize | default "10Gi" }}
    - name: dshm
      emptyDir:
        medium: Memory
        sizeLimit: {{ $t.ray.kuberay.objectStoreSize | default "4Gi" }}
    {{- if not $t.registry.uri }}
    - name: registry
      persistentVolumeClaim:
        claimName: {{ include "distillery.registryClaim" $root }}
    {{- end }}
    {{- include "distillery.ray.modelCacheVolume" $root | trim | nindent 4 }}
    {{- if and .job $root.Values.filters.enabled }}
    - name: filters
      configMap:
        name: {{ default (printf "%s-filters" (include "distillery.fullname" $root)) $root.Values.filters.existingConfigMap }}
        {{- if not $root.Values.filters.existingConfigMap }}
        items:
          {{- range $path, $_ := $root.Files.Glob "files/filters/**" }}
          - key: {{ trimPrefix "files/filters/" $path | replace "/" "__" }}
            path: {{ trimPrefix "files/filters/" $path }}
          {{- end }}
        {{- end }}
    {{- end }}
{{- end -}}

{{/* The RayCluster spec: a head and a CPU worker group, plus a GPU worker group (fine-tuning) when enabled. */}}
{{- define "distillery.ray.clusterSpec" -}}
{{- $root := .root }}
{{- $k := $root.Values.services.trainer.ray.kuberay }}
rayVersion: {{ $k.rayVersion | quote }}
enableInTreeAutoscaling: true
headGroupSpec:
  rayStartParams:
    num-cpus: {{ $k.head.numCpus | quote }}
    dashboard-host: "0.0.0.0"
    disable-usage-stats: "true"
  template:
    {{- include "distillery.ray.pod" (dict "root" $root "role" "head" "gpu" 0 "resources" $k.head.resources "job" .job) | nindent 4 }}
workerGroupSpecs:
  - groupName: workers
    replicas: {{ $k.workers.replicas }}
    minReplicas: {{ $k.workers.minReplicas }}
    maxReplicas: {{ $k.workers.maxReplicas }}
    rayStartParams:
      disable-usage-stats: "true"
    template:
      {{- include "distillery.ray.pod" (dict "root" $root "role" "worker" "gpu" $k.workers.gpu "resources" $k.workers.resources) | nindent 6 }}
  {{- if $k.gpuWorkers.enabled }}
  - groupName: gpu-workers
    replicas: {{ $k.gpuWorkers.replicas }}
    minReplicas: {{ $k.gpuWorkers.minReplicas }}
    maxReplicas: {{ $k.gpuWorkers.maxReplicas }}
    rayStartParams:
      disable-usage-stats: "true"
    template:
      {{- include "distillery.ray.pod" (dict "root" $root "role" "gpu-worker" "gpu" $k.gpuWorkers.gpu "resources" $k.gpuWorkers.resources) | nindent 6 }}
  {{- end }}
{{- end -}}
