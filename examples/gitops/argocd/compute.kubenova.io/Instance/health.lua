-- Argo CD health check for Kubenova's Instance (compute.kubenova.io).
--
-- Installed in argocd-cm as resource.customizations.health.compute.kubenova.io_Instance
-- (examples/gitops/argocd/argocd-cm-patch.yaml holds this script byte for byte). Argo CD
-- runs it on gopher-lua (Lua 5.1) with the object as the global obj; it returns
-- {status = ..., message = ...}. For scripts from argocd-cm, Argo CD opens only Lua's base,
-- table and a safe os library: no string or math functions here.
--
--   Progressing  no status yet; a spec generation not observed yet (status says what an
--                older spec led to); Pending, Building or Deleting; Running but not Ready.
--   Healthy      Ready=True, for the generation in the spec.
--   Suspended    Stopped, Paused or Suspended.
--   Degraded     Error (the fault says why); also Unknown, which means the instance's host
--                is down: nobody can tell what the guest is doing, and an administrator has
--                to act (bring the host back or evacuate it). Argo CD's own Unknown would say
--                that this check could not judge, which is not so, and would not fire the
--                on-health-degraded notifications that an outage should.
--   Unknown      a phase this script does not know (a newer Kubenova).

local function find_condition(status, type)
  if status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.type == type then
      return condition
    end
  end
  return nil
end

-- "Scheduled=False: 0/3 hosts: 2 insufficient memory, 1 down"
local function describe(condition)
  local text = condition.type .. "=" .. tostring(condition.status)
  if condition.message ~= nil and condition.message ~= "" then
    text = text .. ": " .. condition.message
  end
  return text
end

local function on_host(status)
  if status.host ~= nil then
    return " on host " .. status.host
  end
  return ""
end

local function health(obj)
  local metadata = obj.metadata or {}
  local status = obj.status
  if metadata.deletionTimestamp ~= nil then
    return {status = "Progressing", message = "Deleting"}
  end
  if status == nil or status.phase == nil then
    return {status = "Progressing", message = "Waiting for Kubenova to take the instance"}
  end
  local phase = status.phase
  local generation = metadata.generation
  local observed = status.observedGeneration
  if generation ~= nil and (observed == nil or observed < generation) then
    return {
      status = "Progressing",
      message = "Generation " .. tostring(generation) .. " not acted on yet (the status, "
        .. phase .. ", is of generation " .. tostring(observed) .. ")",
    }
  end

  local ready = find_condition(status, "Ready")
  if phase == "Running" then
    if ready ~= nil and ready.status == "True" then
      local message = "Running" .. on_host(status)
      if status.addresses ~= nil and status.addresses[1] ~= nil then
        message = message .. " at " .. status.addresses[1]
      end
      return {status = "Healthy", message = message}
    end
    if ready ~= nil then
      return {status = "Progressing", message = describe(ready)}
    end
    return {status = "Progressing", message = "Running; no Ready condition yet"}
  elseif phase == "Pending" then
    local scheduled = find_condition(status, "Scheduled")
    if scheduled ~= nil and scheduled.status ~= "True" then
      return {status = "Progressing", message = describe(scheduled)}
    end
    return {status = "Progressing", message = "Pending"}
  elseif phase == "Building" then
    local message = "Building" .. on_host(status)
    if status.taskState ~= nil then
      message = message .. " (" .. status.taskState .. ")"
    end
    return {status = "Progressing", message = message}
  elseif phase == "Deleting" then
    return {status = "Progressing", message = "Deleting" .. on_host(status)}
  elseif phase == "Stopped" or phase == "Paused" or phase == "Suspended" then
    return {status = "Suspended", message = phase .. on_host(status)}
  elseif phase == "Error" then
    local why = "no fault recorded"
    if status.fault ~= nil and status.fault.message ~= nil then
      why = status.fault.message
    elseif ready ~= nil and ready.message ~= nil then
      why = ready.message
    end
    return {status = "Degraded", message = "Error: " .. why}
  elseif phase == "Unknown" then
    local host = "the instance's host"
    if status.host ~= nil then
      host = "host " .. status.host
    end
    return {
      status = "Degraded",
      message = "Unknown: " .. host .. " is down, so the guest's state cannot be known",
    }
  end
  return {status = "Unknown", message = "Phase " .. tostring(phase) .. " is not known to this check"}
end

return health(obj)
