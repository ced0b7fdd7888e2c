-- Argo CD health check for mesh.fleetmesh.io/MeshCluster (fleetmesh config/argocd).
-- Argo CD runs it with only Lua's base, table and package libraries (no string library), with
-- the object as `obj`; it must return {status = ..., message = ...}.
-- Ready is the member's summary (CAPI style): the reason of its first false condition.
local hs = {}

local function condition(conditions, t)
  for _, c in ipairs(conditions) do
    if c.type == t then
      return c
    end
  end
  return nil
end

local function describe(c)
  local reason = c.reason or ""
  local message = c.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if message ~= "" then
    return message
  end
  return reason
end

local conditions = {}
if obj.status ~= nil and obj.status.conditions ~= nil then
  conditions = obj.status.conditions
end
local ready = condition(conditions, "Ready")

if obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  if ready ~= nil and ready.reason == "Deleting" then
    hs.message = describe(ready)
  else
    hs.message = "Being deleted: the operator is uninstalling the control plane from the member"
  end
  return hs
end

if #conditions == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the fleetmesh operator to report status"
  return hs
end

-- A status written for an older spec says nothing about the current one.
local generation = obj.metadata.generation or 0
local observed = obj.status.observedGeneration or 0
if observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation) .. " (status describes " .. tostring(observed) .. ")"
  return hs
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  if obj.status.agentVersion ~= nil and obj.status.agentVersion ~= "" then
    hs.message = hs.message .. " (agent " .. obj.status.agentVersion .. ")"
  end
  return hs
end

-- The member's API server does not answer: fleetmesh keeps retrying, but someone should look.
-- Every other reason (rolling out, version not reported yet, not provisioned) resolves itself.
if ready.reason == "Unreachable" then
  hs.status = "Degraded"
  hs.message = describe(ready)
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready)
return hs
