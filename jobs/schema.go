package jobs

import "github.com/hashicorp/hcl/v2"

// blockSpec lists what a Nomad job-specification block may contain. It is written from
// Nomad's job-specification documentation and covers the blocks this bundle uses and
// their common siblings: an attribute or block outside it is reported as a mistake, the
// way `nomad job validate` rejects an unknown argument.
type blockSpec struct {
	labels   []string // label names
	attrs    []string // attribute names
	blocks   []string // nested block types
	freeForm bool     // arbitrary attributes (env, meta, config, options)
	required []string // attributes that must be present
}

// repeatable block types: everything else may appear at most once in its parent.
var repeatable = map[string]bool{
	"group": true, "task": true, "service": true, "check": true, "constraint": true,
	"affinity": true, "spread": true, "template": true, "artifact": true, "port": true,
	"device": true, "volume": true, "volume_mount": true, "identity": true, "variable": true,
	"locals": true, "validation": true, "target": true, "header": true, "action": true,
}

var specs = map[string]blockSpec{
	"": {
		blocks: []string{"variable", "locals", "job"},
	},
	"variable": {
		labels: []string{"name"},
		attrs:  []string{"description", "type", "default", "sensitive"},
		blocks: []string{"validation"},
	},
	"validation": {
		attrs:    []string{"condition", "error_message"},
		required: []string{"condition", "error_message"},
	},
	"locals": {freeForm: true},
	"job": {
		labels: []string{"name"},
		attrs: []string{"region", "namespace", "datacenters", "node_pool", "type", "priority",
			"all_at_once", "consul_token", "vault_token", "meta"},
		blocks: []string{"group", "update", "constraint", "affinity", "spread", "parameterized",
			"periodic", "meta", "migrate", "reschedule", "ui"},
	},
	"group": {
		labels: []string{"name"},
		attrs: []string{"count", "shutdown_delay", "stop_after_client_disconnect",
			"max_client_disconnect", "prevent_reschedule_on_lost", "meta"},
		blocks: []string{"task", "network", "service", "volume", "update", "restart", "reschedule",
			"constraint", "affinity", "spread", "ephemeral_disk", "meta", "migrate", "scaling",
			"consul", "disconnect"},
	},
	"task": {
		labels: []string{"name"},
		attrs: []string{"driver", "user", "kill_timeout", "kill_signal", "leader", "shutdown_delay",
			"kind", "env", "meta"},
		blocks: []string{"config", "env", "resources", "template", "artifact", "service",
			"constraint", "affinity", "logs", "meta", "restart", "identity", "consul", "vault",
			"lifecycle", "dispatch_payload", "volume_mount", "scaling", "action"},
		required: []string{"driver"},
	},
	"network": {
		attrs:  []string{"mode", "hostname"},
		blocks: []string{"port", "dns"},
	},
	"port": {labels: []string{"label"}, attrs: []string{"static", "to", "host_network", "ignore_collision"}},
	"dns":  {attrs: []string{"servers", "searches", "options"}},
	"ui":   {attrs: []string{"description"}, blocks: []string{"link"}},
	"link": {attrs: []string{"label", "url"}},
	"scaling": {
		attrs:  []string{"min", "max", "enabled"},
		blocks: []string{"policy"},
	},
	"policy": {freeForm: true},
	"service": {
		attrs: []string{"name", "port", "tags", "canary_tags", "enable_tag_override",
			"address_mode", "address", "task", "provider", "on_update", "meta", "canary_meta", "kind"},
		blocks: []string{"check", "meta", "canary_meta", "identity", "tagged_addresses"},
	},
	"tagged_addresses": {freeForm: true},
	"check": {
		attrs: []string{"type", "name", "path", "port", "protocol", "interval", "timeout",
			"method", "body", "address_mode", "command", "args", "expose", "initial_status",
			"success_before_passing", "failures_before_critical", "failures_before_warning",
			"tls_skip_verify", "tls_server_name", "on_update", "task", "grpc_service", "grpc_use_tls"},
		blocks:   []string{"check_restart", "header"},
		required: []string{"type", "interval", "timeout"},
	},
	"header":        {freeForm: true},
	"check_restart": {attrs: []string{"limit", "grace", "ignore_warnings"}},
	"update": {attrs: []string{"max_parallel", "health_check", "min_healthy_time",
		"healthy_deadline", "progress_deadline", "auto_revert", "auto_promote", "canary", "stagger"}},
	"migrate": {attrs: []string{"max_parallel", "health_check", "min_healthy_time", "healthy_deadline"}},
	"restart": {attrs: []string{"attempts", "interval", "delay", "mode", "render_templates"}},
	"reschedule": {attrs: []string{"attempts", "interval", "delay", "delay_function", "max_delay",
		"unlimited"}},
	"disconnect": {attrs: []string{"lost_after", "replace", "reconcile", "stop_on_client_after"}},
	"resources": {
		attrs:  []string{"cpu", "cores", "memory", "memory_max", "secrets"},
		blocks: []string{"device", "numa"},
	},
	"numa": {attrs: []string{"affinity", "devices"}},
	"device": {
		labels: []string{"name"},
		attrs:  []string{"count"},
		blocks: []string{"constraint", "affinity"},
	},
	"constraint": {attrs: []string{"attribute", "operator", "value", "distinct_hosts",
		"distinct_property", "regexp", "set_contains", "version", "semver"}},
	"affinity": {attrs: []string{"attribute", "operator", "value", "weight"}},
	"spread":   {attrs: []string{"attribute", "weight"}, blocks: []string{"target"}},
	"target":   {labels: []string{"value"}, attrs: []string{"percent"}},
	"template": {
		attrs: []string{"source", "destination", "data", "change_mode", "change_signal", "splay",
			"perms", "uid", "gid", "left_delimiter", "right_delimiter", "env",
			"error_on_missing_key", "vault_grace", "once"},
		blocks:   []string{"wait", "change_script"},
		required: []string{"destination"},
	},
	"wait":          {attrs: []string{"min", "max"}},
	"change_script": {attrs: []string{"command", "args", "timeout", "fail_on_error"}},
	"identity": {attrs: []string{"name", "aud", "env", "file", "filepath", "ttl", "change_mode",
		"change_signal", "service_name"}},
	"consul": {attrs: []string{"cluster", "namespace", "partition"}},
	"vault": {attrs: []string{"cluster", "role", "namespace", "env", "disable_file",
		"change_mode", "change_signal", "allow_token_expiration"}},
	"volume": {
		labels: []string{"name"},
		attrs: []string{"type", "source", "read_only", "access_mode", "attachment_mode",
			"per_alloc", "sticky"},
		blocks:   []string{"mount_options"},
		required: []string{"type", "source"},
	},
	"mount_options": {attrs: []string{"fs_type", "mount_flags"}},
	"volume_mount": {attrs: []string{"volume", "destination", "read_only", "propagation_mode",
		"selinux_label"}, required: []string{"volume", "destination"}},
	"artifact": {
		attrs:    []string{"source", "destination", "mode", "chown"},
		blocks:   []string{"options", "headers"},
		required: []string{"source"},
	},
	"options":          {freeForm: true},
	"headers":          {freeForm: true},
	"parameterized":    {attrs: []string{"payload", "meta_required", "meta_optional"}},
	"periodic":         {attrs: []string{"crons", "cron", "prohibit_overlap", "time_zone", "enabled"}},
	"dispatch_payload": {attrs: []string{"file"}},
	"ephemeral_disk":   {attrs: []string{"size", "migrate", "sticky"}},
	"logs":             {attrs: []string{"max_files", "max_file_size", "disabled", "enabled"}},
	"lifecycle":        {attrs: []string{"hook", "sidecar"}, required: []string{"hook"}},
	"action":           {labels: []string{"name"}, attrs: []string{"command", "args"}},
	"meta":             {freeForm: true},
	"canary_meta":      {freeForm: true},
	"env":              {freeForm: true},
	"config":           {freeForm: true},
}

// schema returns the HCL body schema of a block type.
func (s blockSpec) schema() *hcl.BodySchema {
	sc := &hcl.BodySchema{}
	for _, a := range s.attrs {
		sc.Attributes = append(sc.Attributes, hcl.AttributeSchema{Name: a})
	}
	for _, b := range s.blocks {
		sc.Blocks = append(sc.Blocks, hcl.BlockHeaderSchema{Type: b, LabelNames: specs[b].labels})
	}
	return sc
}
