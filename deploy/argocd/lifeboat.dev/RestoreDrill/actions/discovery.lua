-- Lifeboat RestoreDrill actions for Argo CD: a drill now, outside its schedule, counted like a scheduled
-- one (what `kubectl lifeboat drill now` does). The operator refuses nothing here: start one only when
-- the last has ended, or two restores share one target.
local actions = {}
actions["drill-now"] = { ["disabled"] = false }
return actions
