-- Lifeboat health for Argo CD: a Cutover is Progressing through its steps, Suspended while it waits for
-- a person's GO, Healthy once it succeeded and Degraded once it failed or rolled back.
local hs = { status = "Progressing", message = "Waiting for the Lifeboat operator" }
if obj.status == nil or obj.status.phase == nil then
  return hs
end
local phase = obj.status.phase
local step = obj.status.step or phase
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = "Cutover succeeded; active side: " .. (obj.status.active or "to")
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = "Cutover failed at " .. step
elseif phase == "RolledBack" then
  hs.status = "Degraded"
  local reason = "rolled back"
  if obj.status.rollback ~= nil and obj.status.rollback.reason ~= nil then
    reason = "rolled back: " .. obj.status.rollback.reason
  end
  hs.message = reason
elseif phase == "AwaitingApproval" then
  hs.status = "Suspended"
  hs.message = "Waiting for approval (kubectl lifeboat approve)"
else
  hs.message = phase .. ": " .. step
end
return hs
