-- Creates a Backup of this policy now, as `kubectl lifeboat backup now` does.
local backup = {}
backup.apiVersion = "lifeboat.dev/v1alpha1"
backup.kind = "Backup"
backup.metadata = {}
backup.metadata.name = obj.metadata.name .. "-argocd-" .. os.date("!%Y%m%d%H%M%S")
backup.metadata.namespace = obj.metadata.namespace
backup.spec = {}
backup.spec.policyRef = { name = obj.metadata.name }
backup.spec.trigger = "Manual"
backup.spec.reason = "Argo CD action backup-now"
local operations = {}
operations[1] = { operation = "create", resource = backup }
return operations
