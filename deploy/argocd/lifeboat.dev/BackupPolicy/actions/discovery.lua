-- Lifeboat BackupPolicy actions for Argo CD: a backup now (a Backup object, trigger Manual), and
-- suspend/resume of the schedule (a change to spec: Argo CD shows it as drift until Git says the same).
local actions = {}
local suspended = obj.spec ~= nil and obj.spec.suspend == true
actions["backup-now"] = { ["disabled"] = false }
actions["suspend"] = { ["disabled"] = suspended }
actions["resume"] = { ["disabled"] = not suspended }
return actions
