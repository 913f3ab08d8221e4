"""The serving app's actions and resource types (gathered by ``accounts.catalogue``).

``True`` in the last place marks an action refused until the tenant authorized the service role.
Batch jobs are served here too until they have an app of their own.
"""

from accounts.catalogue import Action, ResourceType

R, W = "read", "write"

RESOURCE_TYPES = [
    ResourceType("resource-group", "A public or dedicated resource group"),
    ResourceType("service", "An online inference service (service/<service id>)"),
    ResourceType("job", "A batch job"),
]

ACTIONS = [
    Action("ems:DescribeResourceGroups", "List resource groups", "resource-group"),
    # services
    Action("ems:DescribeServices", "List services", "service", R, True),
    Action("ems:DescribeService", "See one service", "service", R, True),
    Action("ems:CreateService", "Deploy a service", "service", W, True),
    Action("ems:DeleteService", "Delete a service", "service", W, True),
    Action("ems:StopService", "Stop a service", "service", W, True),
    Action("ems:ResumeService", "Resume a service", "service", W, True),
    Action("ems:ScaleService", "Scale a service", "service", W, True),
    Action("ems:UpdateService", "Roll a service to a new config version", "service", W, True),
    Action("ems:RollbackService", "Roll a service back", "service", W, True),
    Action("ems:DescribeServiceToken", "See a service's address and token", "service", R, True),
    Action("ems:RotateServiceToken", "Rotate a service's token", "service", W, True),
    Action(
        "ems:RevokeServiceToken",
        "Revoke a service's tokens (a new one is issued)",
        "service",
        W,
        True,
    ),
    Action("ems:DescribeServiceEvents", "Read a service's events", "service", R, True),
    Action("ems:DescribeServiceInstances", "List a service's instances", "service", R, True),
    Action("ems:DescribeServiceMetrics", "Read a service's metrics", "service", R, True),
    Action("ems:DescribeServiceLogs", "Read a service's logs", "service", R, True),
    # batch jobs
    Action("ems:DescribeJobs", "List batch jobs", "job", R, True),
    Action("ems:DescribeJob", "See one batch job", "job", R, True),
    Action("ems:CreateJob", "Start a batch job", "job", W, True),
    Action("ems:CancelJob", "Cancel a batch job", "job", W, True),
]
