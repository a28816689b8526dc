{{/*
Names and labels shared by the templates.
*/}}

{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name: RELEASE-sluice, or RELEASE alone when it already contains the
chart name. Truncated to 63 characters (some name fields are DNS labels).
*/}}
{{- define "sluice.fullname" -}}
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

{{- define "sluice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator's pods (never change them on upgrade). */}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object; the component is the operator's unless said otherwise. */}}
{{- define "sluice.baseLabels" -}}
helm.sh/chart: {{ include "sluice.chart" . }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: sluice
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "sluice.labels" -}}
{{ include "sluice.baseLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sluice.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The metrics Service's name; the "up" alert selects its scrape job by it. */}}
{{- define "sluice.metricsServiceName" -}}
{{- printf "%s-metrics" (include "sluice.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The webhook Service's name: its DNS name is in the serving certificate. */}}
{{- define "sluice.webhookServiceName" -}}
{{- printf "%s-webhook" (include "sluice.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* True (non-empty) when the cluster serves the prometheus-operator API. */}}
{{- define "sluice.hasMonitoringApi" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}true{{ end }}
{{- end }}

{{/*
What the operator does in each namespace it watches, and nothing more:
  - Jobs: it lists and watches them (kopf), creates one per task attempt and
    deletes superseded or expired ones. No get/update/patch: it never edits a Job.
  - Pipelines and Tasks: list and watch only (it never creates, edits or deletes
    them; users do).
  - pipelines/status: it writes the status subresource (merge patch).
  - pipelines/finalizers: its Jobs carry an ownerReference with
    blockOwnerDeletion, which clusters running the OwnerReferencesPermissionEnforcement
    admission plugin allow only with update on the owner's finalizers.
  - Events: it posts one per significant transition of a pipeline.
  - Pods: it lists and watches the pods of its Jobs (label-selected), read-only:
    a step's pod that succeeded hands off before the Job's batched status, and
    gives the results its step wrote to its termination message.
No Secrets, no pod writes, no RBAC objects.
*/}}
{{- define "sluice.workloadRules" -}}
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["list", "watch", "create", "delete"]
- apiGroups: ["sluice.dev"]
  resources: ["pipelines", "tasks"]
  verbs: ["list", "watch"]
- apiGroups: ["sluice.dev"]
  resources: ["pipelines/status"]
  verbs: ["patch"]
- apiGroups: ["sluice.dev"]
  resources: ["pipelines/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["events"]
  # patch: a repeated Event increments the existing one's count (as client-go's recorder does);
  # list: a stuck step's Job's Events (FailedCreate), by involvedObject
  verbs: ["create", "patch", "list"]
# Read-only: the pod view (list/watch, label-selected: hand-off on a pod's success, the
# results a step wrote to its termination message) and one Job's pods (results the view
# lacks, a stuck step).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
{{- end }}

{{/*
How much a counter of this install's targets grew over a window, new series
included: increase() needs two samples, so a label set born during the window
(its first value already 11) would count nothing. A series absent a window
ago, of a target Prometheus did scrape a window ago, counts its whole value.
`up{TARGET}` (job and the release namespace) keeps another install's series
out, even one with the same job name. Arguments: (list SELECTOR WINDOW TARGET).
*/}}
{{- define "sluice.increase" -}}
{{- $sel := index . 0 }}{{ $w := index . 1 }}{{ $target := index . 2 -}}
((({{ $sel }} unless {{ $sel }} offset {{ $w }}) and on (job, instance) (up{{ printf "{%s}" $target }} offset {{ $w }})) or increase({{ $sel }}[{{ $w }}])) and on (job, instance) up{{ printf "{%s}" $target }}
{{- end }}
