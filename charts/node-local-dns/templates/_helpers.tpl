{{/* Names: the release name when it holds the chart's name (`helm install node-local-dns`),
so a default install names its objects as manifests/nodelocaldns.yaml does. */}}
{{- define "node-local-dns.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "node-local-dns.fullname" -}}
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

{{- define "node-local-dns.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "node-local-dns.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "node-local-dns.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "node-local-dns.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "node-local-dns.upstreamsvc" -}}
{{- default "kube-dns-upstream" .Values.config.customUpstreamsvc }}
{{- end }}

{{- define "node-local-dns.ipvs" -}}
{{- $mode := .Values.config.kubeProxyMode }}
{{- if not (has $mode (list "iptables" "ipvs" "nftables")) }}
{{- fail (printf "config.kubeProxyMode %q: must be iptables, ipvs or nftables" $mode) }}
{{- end }}
{{- if eq $mode "ipvs" }}true{{ end }}
{{- end }}

{{/* -localip: in IPVS mode the link-local IP alone, else also the kube-dns IP, which
node-cache then takes over on every node (the upstream addon's two recipes). */}}
{{- define "node-local-dns.localip" -}}
{{- if include "node-local-dns.ipvs" . }}
{{- .Values.config.localDns }}
{{- else }}
{{- printf "%s,%s" .Values.config.localDns .Values.config.dnsServer }}
{{- end }}
{{- end }}

{{- define "node-local-dns.firewallBackend" -}}
{{- $backend := .Values.config.firewallBackend }}
{{- if and (not $backend) (eq .Values.config.kubeProxyMode "nftables") }}
{{- $backend = "nftables" }}
{{- end }}
{{- if and $backend (not (has $backend (list "iptables" "nftables" "auto"))) }}
{{- fail (printf "config.firewallBackend %q: must be iptables, nftables or auto" $backend) }}
{{- end }}
{{- $backend }}
{{- end }}

{{/* Cache options shared by every server block: prefetch and serve_stale (the stale policy is
added per block by node-local-dns.stalePolicy). */}}
{{- define "node-local-dns.cacheOptions" -}}
{{- with .Values.config.prefetch }}
{{- if .enabled }}
            prefetch {{ .amount }} {{ .duration }} {{ .percentage }}
{{- end }}
{{- end }}
{{- with .Values.config.serveStale }}
{{- if .enabled }}
{{- if not (has .refreshMode (list "immediate" "verify")) }}
{{- fail (printf "config.serveStale.refreshMode %q: must be immediate or verify" .refreshMode) }}
{{- end }}
{{- if eq .refreshMode "verify" }}
            serve_stale {{ .duration }} verify {{ .verifyTimeout }} {{ .responseTTL }} {{ .failureRecheck }}
{{- else }}
            serve_stale {{ .duration }} immediate {{ .responseTTL }} {{ .failureRecheck }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* `serve_stale_policy prefer_positive` when config.serveStale.preferPositive covers the
block: `external` (the `.:53` block, names outside the cluster), `all` or `none`. */}}
{{- define "node-local-dns.stalePolicy" -}}
{{- with .Values.config.serveStale }}
{{- if not (has .preferPositive (list "none" "external" "all")) }}
{{- fail (printf "config.serveStale.preferPositive %q: must be none, external or all" .preferPositive) }}
{{- end }}
{{- if and .enabled (or (eq .preferPositive "all") (and $.external (eq .preferPositive "external"))) }}
            serve_stale_policy prefer_positive
{{- end }}
{{- end }}
{{- end }}

{{- define "node-local-dns.protocol" -}}
{{- if and . (not (has . (list "force_tcp" "prefer_udp"))) }}
{{- fail (printf "protocol %q: must be force_tcp, prefer_udp or empty" .) }}
{{- end }}
{{- . }}
{{- end }}

{{/* A `forward . TO` line, with a block when there are options. */}}
{{- define "node-local-dns.forward" -}}
{{- $lines := .lines | default list }}
{{- if .protocol }}{{ $lines = prepend $lines (include "node-local-dns.protocol" .protocol) }}{{ end }}
    forward . {{ .to }}
{{- if $lines }} {
{{- range $lines }}
            {{ . }}
{{- end }}
    }
{{- end }}
{{- end }}

{{/* The base Corefile (the node-local-dns ConfigMap's `Corefile`, node-cache's template):
the addon's four server blocks, indented as the addon's, plus the knobs. node-cache fills
what is left of the placeholders (README "Flags", SPEC §2). */}}
{{- define "node-local-dns.corefile" -}}
{{- $c := .Values.config }}
{{- $ipvs := include "node-local-dns.ipvs" . }}
{{- $bind := ternary $c.localDns (printf "%s %s" $c.localDns $c.dnsServer) (eq $ipvs "true") }}
{{- $cluster := ternary $c.dnsServer "__PILLAR__CLUSTER__DNS__" (eq $ipvs "true") }}
{{- $toCluster := dict "to" $cluster "protocol" $c.commProtocol }}
{{- $options := include "node-local-dns.cacheOptions" . }}
{{- $internal := printf "%s%s" $options (include "node-local-dns.stalePolicy" (dict "Values" .Values "external" false)) }}
{{- $external := printf "%s%s" $options (include "node-local-dns.stalePolicy" (dict "Values" .Values "external" true)) }}
{{- $c.dnsDomain }}:53 {
    errors
{{- if $c.enableLogging }}
    log
{{- end }}
    cache {
            success {{ $c.clusterCache.successCapacity }} {{ $c.clusterCache.successTTL }}
            denial {{ $c.clusterCache.denialCapacity }} {{ $c.clusterCache.denialTTL }}
{{- $internal }}
    }
    reload
    loop
    bind {{ $bind }}
{{- include "node-local-dns.forward" $toCluster }}
    prometheus :9253
    health {{ $c.localDns }}:{{ $c.healthPort }}
    }
{{- range list "in-addr.arpa" "ip6.arpa" }}
{{ . }}:53 {
    errors
{{- if $internal }}
    cache {{ $c.cacheTTL }} {
{{- $internal }}
    }
{{- else }}
    cache {{ $c.cacheTTL }}
{{- end }}
    reload
    loop
    bind {{ $bind }}
{{- include "node-local-dns.forward" $toCluster }}
    prometheus :9253
    }
{{- end }}
.:53 {
    errors
{{- if $c.enableLogging }}
    log
{{- end }}
{{- if $external }}
    cache {{ $c.cacheTTL }} {
{{- $external }}
    }
{{- else }}
    cache {{ $c.cacheTTL }}
{{- end }}
    reload
    loop
    bind {{ $bind }}
{{- include "node-local-dns.forward" (dict "to" $c.upstreamServers "protocol" $c.upstreamCommProtocol "lines" $c.upstreamForwardConfig) }}
    prometheus :9253
{{- if $c.noIPv6Lookups }}
{{- /* templates/aaaa-filter.Corefile, the same text for Corefiles made without the chart. */}}
    template ANY AAAA {
            rcode NOERROR
    }
{{- end }}
    }
{{- with $c.extraServerBlocks }}
{{ tpl . $ | trim }}
{{- end }}
{{- end }}
