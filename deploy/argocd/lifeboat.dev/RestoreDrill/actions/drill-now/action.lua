-- The Restore the drill controller makes for a scheduled slot (src/controller/restore_drill: drill_restore
-- and plan::restore_spec_for; tests/argocd_actions.rs checks this output against them).
local spec = obj.spec
local now = os.date("!%Y-%m-%dT%H:%M:%SZ")
local restore = {}
restore.apiVersion = "lifeboat.dev/v1alpha1"
restore.kind = "Restore"
restore.metadata = {}
restore.metadata.name = obj.metadata.name .. "-now-" .. tostring(os.time())
restore.metadata.namespace = obj.metadata.namespace
restore.metadata.labels = {}
restore.metadata.labels["lifeboat.dev/drill"] = obj.metadata.name
restore.metadata.labels["lifeboat.dev/policy"] = spec.policyRef.name
restore.metadata.annotations = {}
restore.metadata.annotations["lifeboat.dev/drill-start"] = now
restore.metadata.ownerReferences = {
  { apiVersion = obj.apiVersion, kind = obj.kind, name = obj.metadata.name, uid = obj.metadata.uid,
    controller = true }
}
local existing = nil
if spec.target.postgres ~= nil then existing = spec.target.postgres.database end
if spec.target.mysql ~= nil then existing = spec.target.mysql.database end
local cleanup = spec.cleanup ~= false
restore.spec = {}
restore.spec.source = { policyRef = { name = spec.policyRef.name } }
restore.spec.target = spec.target
restore.spec.dropExisting = existing ~= nil
restore.spec.confirmOverwrite = existing
restore.spec.keepScratch = spec.target.scratch ~= nil and not cleanup
restore.spec.dropAfter = existing ~= nil and cleanup
restore.spec.verify = spec.verify
restore.spec.smoke = spec.smoke
restore.spec.jobTemplate = spec.jobTemplate
local operations = {}
operations[1] = { operation = "create", resource = restore }
return operations
