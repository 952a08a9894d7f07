-- Lifeboat health for Argo CD: a run is Healthy once it succeeded, Degraded once it failed.
local hs = { status = "Progressing", message = "Waiting for the Lifeboat operator" }
if obj.status == nil then
  return hs
end
local phase = obj.status.phase
if obj.status.message ~= nil then
  hs.message = obj.status.message
end
if phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "Failed" then
  hs.status = "Degraded"
elseif obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Stalled" and condition.status == "True" then
      hs.status = "Degraded"
      hs.message = condition.message
    end
  end
end
return hs
