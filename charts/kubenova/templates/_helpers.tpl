{{/*
Names, labels and images, defined once. Every object name goes through kubenova.componentName,
which cuts it to 63 characters (a DNS label, the longest a Service or label value may be).
*/}}

{{/* The chart's name: kubenova, or nameOverride. */}}
{{- define "kubenova.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{/*
The prefix of every object's name: fullnameOverride, else the release name, followed by the
chart's name unless the release name already contains it ("kubenova" gives "kubenova", "prod"
gives "prod-kubenova").
*/}}
{{- define "kubenova.fullname" -}}
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
{{- end }}

{{/*
The name of one component's objects: <fullname>-<component>, cut to 63 characters, or to
"max" when given (a StatefulSet's name must leave room for the revision hash the controller
appends in a label value, so StatefulSets pass 52).
Call with (dict "root" $ "component" "operator").
*/}}
{{- define "kubenova.componentName" -}}
{{- $max := int (default 63 .max) -}}
{{- printf "%s-%s" (include "kubenova.fullname" .root) .component | trunc $max | trimSuffix "-" -}}
{{- end }}

{{/* "<chart>-<version>", for the helm.sh/chart label. */}}
{{- define "kubenova.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{/* Labels that select one component's pods. Call with (dict "root" $ "component" "..."). */}}
{{- define "kubenova.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubenova.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Labels of every object. Call with (dict "root" $ "component" "..."). */}}
{{- define "kubenova.labels" -}}
{{ include "kubenova.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: kubenova
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ include "kubenova.chart" .root }}
{{- end }}

{{/*
One component's image: <image.registry>/<repository>:<image.tag or appVersion>.
Call with (dict "root" $ "image" .Values.operator.image).
*/}}
{{- define "kubenova.image" -}}
{{- $tag := default .root.Chart.AppVersion .root.Values.image.tag -}}
{{- if .root.Values.image.registry -}}
{{- printf "%s/%s:%s" .root.Values.image.registry .image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end }}

{{/*
imagePullSecrets of a pod spec, if any, indented for spec.template.spec (6 spaces) and led by
its own newline, so that nothing at all is printed when there are none.
*/}}
{{- define "kubenova.imagePullSecrets" -}}
{{- with .Values.image.pullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . }}
        {{- end }}
{{- end }}
{{- end }}

{{/* The in-cluster DNS name of a component's Service. Call like kubenova.componentName. */}}
{{- define "kubenova.serviceHost" -}}
{{- printf "%s.%s.svc" (include "kubenova.componentName" .) .root.Release.Namespace -}}
{{- end }}

{{/*
A password kept across upgrades: the one already in the Secret "name" under "key", else a new
random one. The lookup sees the cluster only during install and upgrade; `helm template` and
`--dry-run` always make a new one. Call with (dict "root" $ "name" "..." "key" "password").
*/}}
{{/*
A generated secret of "length" characters that survives upgrades: the value already in the
Secret "name" under "key", else a new one ("root", "name", "key", "length" of a dict).
*/}}
{{- define "kubenova.stableSecret" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .name -}}
{{- $data := dig "data" dict ($existing | default dict) -}}
{{- if hasKey $data .key -}}
{{- index $data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum (int .length) -}}
{{- end -}}
{{- end }}

{{- define "kubenova.stablePassword" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .name -}}
{{- $data := dig "data" dict ($existing | default dict) -}}
{{- if hasKey $data .key -}}
{{- index $data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum 32 -}}
{{- end -}}
{{- end }}

{{/*
Where the operator reads its database URL: a Secret's name and key, as
"name" and "key" of a dict (use with fromYaml).
*/}}
{{- define "kubenova.databaseUrlSecret" -}}
{{- if .Values.mariadb.enabled -}}
name: {{ include "kubenova.componentName" (dict "root" . "component" "mariadb") }}
key: url
{{- else if .Values.externalDatabase.existingSecret -}}
name: {{ .Values.externalDatabase.existingSecret }}
key: {{ .Values.externalDatabase.secretKey }}
{{- else -}}
name: {{ include "kubenova.componentName" (dict "root" . "component" "external-database") }}
key: url
{{- end -}}
{{- end }}

{{/* Where the operator reads its AMQP URL, as kubenova.databaseUrlSecret does. */}}
{{- define "kubenova.amqpUrlSecret" -}}
{{- if .Values.rabbitmq.enabled -}}
name: {{ include "kubenova.componentName" (dict "root" . "component" "rabbitmq") }}
key: url
{{- else if .Values.externalRabbitmq.existingSecret -}}
name: {{ .Values.externalRabbitmq.existingSecret }}
key: {{ .Values.externalRabbitmq.secretKey }}
{{- else -}}
name: {{ include "kubenova.componentName" (dict "root" . "component" "external-rabbitmq") }}
key: url
{{- end -}}
{{- end }}

{{/*
Checks that span several values, which the schema cannot express. Included by the operator's
Deployment, so every render runs them.
*/}}
{{- define "kubenova.validate" -}}
{{- if not .Values.mariadb.enabled -}}
{{- if and (not .Values.externalDatabase.url) (not .Values.externalDatabase.existingSecret) -}}
{{- fail "mariadb.enabled is false: set externalDatabase.url or externalDatabase.existingSecret" -}}
{{- end -}}
{{- if and .Values.externalDatabase.url .Values.externalDatabase.existingSecret -}}
{{- fail "externalDatabase: set url or existingSecret, not both" -}}
{{- end -}}
{{- end -}}
{{- if not .Values.rabbitmq.enabled -}}
{{- if and (not .Values.externalRabbitmq.url) (not .Values.externalRabbitmq.existingSecret) -}}
{{- fail "rabbitmq.enabled is false: set externalRabbitmq.url or externalRabbitmq.existingSecret" -}}
{{- end -}}
{{- if and .Values.externalRabbitmq.url .Values.externalRabbitmq.existingSecret -}}
{{- fail "externalRabbitmq: set url or existingSecret, not both" -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/*
A pod template's annotations (the component's podAnnotations), indented for
spec.template.metadata (6 spaces) and led by their own newline; nothing when there are none.
*/}}
{{- define "kubenova.podAnnotations" -}}
{{- with . }}
      annotations:
        {{- toYaml . | nindent 8 }}
{{- end }}
{{- end }}

{{/*
Where a StatefulSet keeps its data, from <component>.persistence: a hostPath when one is set,
else a PersistentVolumeClaim when enabled, else an emptyDir. These three helpers render the
parts of that choice; call each with (dict "root" $ "component" "mariadb").
*/}}

{{/* The pod's "data" volume, for a hostPath or an emptyDir (a claim comes from the template). */}}
{{- define "kubenova.dataVolume" -}}
{{- $persistence := (index .root.Values .component).persistence -}}
{{- if $persistence.hostPath }}
- name: data
  hostPath:
    path: {{ $persistence.hostPath }}
    type: DirectoryOrCreate
{{- else if not $persistence.enabled }}
- name: data
  emptyDir: {}
{{- end }}
{{- end }}

{{/* The StatefulSet's volumeClaimTemplates, when its data lives on a claim. */}}
{{- define "kubenova.volumeClaimTemplates" -}}
{{- $persistence := (index .root.Values .component).persistence -}}
{{- if and $persistence.enabled (not $persistence.hostPath) }}
volumeClaimTemplates:
  - metadata:
      name: data
      labels:
        {{- include "kubenova.selectorLabels" . | nindent 8 }}
    spec:
      accessModes: [ReadWriteOnce]
      {{- with $persistence.storageClass }}
      storageClassName: {{ . }}
      {{- end }}
      resources:
        requests:
          storage: {{ $persistence.size }}
{{- end }}
{{- end }}

{{/*
An init container that hands a hostPath data directory to the server's user: the kubelet
makes a missing one as root, and fsGroup does not apply to hostPath volumes. It runs as root
with CHOWN only, and changes the directory itself, not what is inside. Call with
(dict "root" $ "component" "mariadb" "mountPath" "/var/lib/mysql").
*/}}
{{- define "kubenova.volumePermissionsContainer" -}}
{{- $values := index .root.Values .component -}}
{{- if $values.persistence.hostPath }}
- name: volume-permissions
  image: {{ include "kubenova.image" (dict "root" .root "image" $values.image) }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  command:
    - chown
    - {{ printf "%v:%v" (default 0 $values.securityContext.runAsUser) (default 0 $values.securityContext.fsGroup) | quote }}
    - {{ .mountPath }}
  securityContext:
    runAsUser: 0
    runAsNonRoot: false
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: [ALL]
      add: [CHOWN]
  volumeMounts:
    - name: data
      mountPath: {{ .mountPath }}
{{- end }}
{{- end }}

{{/* The agent DaemonSet's nodeSelector as a label selector ("k=v,k2=v2"): the nodes whose
agents the operator gives RabbitMQ users to. */}}
{{- define "kubenova.agentNodeSelector" -}}
{{- $pairs := list -}}
{{- range $key, $value := .Values.agent.nodeSelector -}}
{{- if not (kindIs "invalid" $value) -}}
{{- $pairs = append $pairs (printf "%s=%s" $key $value) -}}
{{- end -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end }}

{{/*
The console proxy's base URL as browsers reach it: console.publicUrl, else the Service's
in-cluster name. The subresources server's consoleurl answers point there.
*/}}
{{- define "kubenova.consolePublicUrl" -}}
{{- if .Values.console.publicUrl -}}
{{- trimSuffix "/" .Values.console.publicUrl -}}
{{- else -}}
{{- printf "https://%s:%v" (include "kubenova.serviceHost" (dict "root" . "component" "console")) .Values.console.service.port -}}
{{- end -}}
{{- end }}

{{/*
The EC2 API's URL as clients reach it: ec2Api.publicUrl, else the Service's in-cluster name.
The server answers DescribeRegions with it, and the ConfigMap kube-public/kubenova-ec2-api
publishes it as the endpoint `kubectl nova ec2-credentials create` hands out.
*/}}
{{- define "kubenova.ec2ApiPublicUrl" -}}
{{- if .Values.ec2Api.publicUrl -}}
{{- trimSuffix "/" .Values.ec2Api.publicUrl -}}
{{- else -}}
{{- printf "https://%s:%v" (include "kubenova.serviceHost" (dict "root" . "component" "ec2-api")) .Values.ec2Api.service.port -}}
{{- end -}}
{{- end }}

{{/*
The ConfigMap that says where the EC2 API is, which `kubectl nova ec2-credentials create` reads
by this fixed name (one per cluster), as NAMESPACE/NAME for the operator.
*/}}
{{- define "kubenova.ec2ApiEndpointConfigMap" -}}
kube-public/kubenova-ec2-api
{{- end }}

{{/*
The DNS names of a component's Service, for its serving certificate: NAME, NAME.NAMESPACE,
NAME.NAMESPACE.svc and NAME.NAMESPACE.svc.cluster.local, as a list. Call like
kubenova.componentName.
*/}}
{{- define "kubenova.serviceDnsNames" -}}
{{- $service := include "kubenova.componentName" . -}}
{{- $namespace := .root.Release.Namespace -}}
{{- list $service (printf "%s.%s" $service $namespace) (printf "%s.%s.svc" $service $namespace) (printf "%s.%s.svc.cluster.local" $service $namespace) | toJson -}}
{{- end }}

{{/*
The certificates the operator issues and renews (KUBENOVA_CERTIFICATES, kubenova.certs.renewal),
as JSON: the console proxy's serving certificate and its client certificate towards QEMU, the
aggregated API server's serving certificate and the EC2 API's, for the components that are
enabled.
*/}}
{{- define "kubenova.certificates" -}}
{{- $certificates := list -}}
{{- $hours := .Values.certificates.lifetimeHours -}}
{{- if .Values.console.enabled -}}
{{- $names := include "kubenova.serviceDnsNames" (dict "root" . "component" "console") | fromJsonArray -}}
{{- with .Values.console.publicUrl -}}
{{- $names = append $names (urlParse .).hostname -}}
{{- end -}}
{{- $names = concat $names .Values.console.extraDnsNames | uniq -}}
{{- $certificates = append $certificates (dict "secret" (include "kubenova.componentName" (dict "root" . "component" "console-tls")) "purpose" "serving" "dnsNames" $names "validityHours" $hours) -}}
{{- end -}}
{{- /* The client certificate towards hosts' consoles: the proxy's, and the aggregated API
server's for instances/vnc and instances/console. */ -}}
{{- if or .Values.console.enabled .Values.subresources.enabled -}}
{{- $certificates = append $certificates (dict "secret" (include "kubenova.componentName" (dict "root" . "component" "console-x509")) "purpose" "console-client" "validityHours" $hours) -}}
{{- end -}}
{{- if .Values.subresources.enabled -}}
{{- $names := include "kubenova.serviceDnsNames" (dict "root" . "component" "subresources") | fromJsonArray -}}
{{- $certificates = append $certificates (dict "secret" (include "kubenova.componentName" (dict "root" . "component" "subresources-tls")) "purpose" "serving" "dnsNames" $names "validityHours" $hours) -}}
{{- end -}}
{{- if .Values.ec2Api.enabled -}}
{{- $names := include "kubenova.serviceDnsNames" (dict "root" . "component" "ec2-api") | fromJsonArray -}}
{{- with .Values.ec2Api.publicUrl -}}
{{- $names = append $names (urlParse .).hostname -}}
{{- end -}}
{{- $names = concat $names .Values.ec2Api.extraDnsNames | uniq -}}
{{- $certificates = append $certificates (dict "secret" (include "kubenova.componentName" (dict "root" . "component" "ec2-api-tls")) "purpose" "serving" "dnsNames" $names "validityHours" $hours) -}}
{{- end -}}
{{- toJson $certificates -}}
{{- end }}

{{/* The APIService of the console subresources (a fixed name: one per cluster). */}}
{{- define "kubenova.subresourcesAPIService" -}}
v1.subresources.compute.kubenova.io
{{- end }}

{{/* The node's console TLS directory (a link the agent swaps to each new certificate), which
the agent writes and libvirt's qemu.conf names; under agent.dataPath, which both mount. */}}
{{- define "kubenova.consoleX509Dir" -}}
{{- printf "%s/pki/console" (trimSuffix "/" .Values.agent.dataPath) -}}
{{- end }}

{{/*
The cert-manager issuer that signs Kubenova's certificates (certificates.certManager), as JSON
{name, kind, group}: certManager.issuerRef, else the CA Issuer of the chart's own chain.
*/}}
{{- define "kubenova.certManagerIssuerRef" -}}
{{- $ref := .Values.certificates.certManager.issuerRef -}}
{{- if $ref.name -}}
{{- dict "name" $ref.name "kind" $ref.kind "group" $ref.group | toJson -}}
{{- else -}}
{{- dict "name" (include "kubenova.componentName" (dict "root" . "component" "ca-issuer")) "kind" "Issuer" "group" "cert-manager.io" | toJson -}}
{{- end -}}
{{- end }}

{{/*
The Secrets whose ca.crt the operator publishes as the trust bundle when cert-manager issues
(KUBENOVA_CERTIFICATES_TRUST_SECRETS), comma-separated: the CA of the chart's own chain when it
renders one (renewed, it is trusted before the leaves it signs are), then each certificate's.
*/}}
{{- define "kubenova.certManagerTrustSecrets" -}}
{{- $secrets := list -}}
{{- if not .Values.certificates.certManager.issuerRef.name -}}
{{- $secrets = append $secrets (include "kubenova.componentName" (dict "root" . "component" "cm-ca")) -}}
{{- end -}}
{{- range include "kubenova.certificates" . | fromJsonArray -}}
{{- $secrets = append $secrets .secret -}}
{{- end -}}
{{- join "," $secrets -}}
{{- end }}

{{/*
The items of a volume of the Secret console-x509: when cert-manager writes it, its keys
(tls.crt, tls.key, ca.crt) under the file names the console hop reads (client-cert.pem,
client-key.pem, ca-cert.pem, as libvirt names them); nothing when the operator writes those
names itself. Indented for a secret volume source (12 spaces).
*/}}
{{- define "kubenova.consoleX509Items" -}}
{{- if .Values.certificates.certManager.enabled }}
            # cert-manager's key names, as the files the console hop reads.
            items:
              - key: ca.crt
                path: ca-cert.pem
              - key: tls.crt
                path: client-cert.pem
              - key: tls.key
                path: client-key.pem
{{- end }}
{{- end }}
