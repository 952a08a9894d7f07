-- Lifeboat Cutover actions for Argo CD. No "approve": a GO must carry the name of the person who gives
-- it (the accountable-approvals policy checks it against the request's user), and an Argo CD action is
-- made by Argo CD's own service account. Approve with `kubectl lifeboat approve`.
local actions = {}
local phase = nil
if obj.status ~= nil then phase = obj.status.phase end
local ended = phase == "Succeeded" or phase == "Failed" or phase == "RolledBack"
-- A Cutover left Failed on the new side (rollback.automatic: false) still rolls back on abort.
local stuck_on_to = phase == "Failed" and obj.status.active == "to" and obj.status.rollback == nil
local already = obj.spec ~= nil and obj.spec.abort == true
actions["abort"] = { ["disabled"] = (ended and not stuck_on_to) or already }
return actions
