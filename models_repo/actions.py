"""The model repository's actions and resource types (gathered by ``accounts.catalogue``).

``True`` in the last place marks an action refused until the tenant authorized the service role.
"""

from accounts.catalogue import Action, ResourceType

R, W = "read", "write"

RESOURCE_TYPES = [
    ResourceType("region", "A region (operators manage them)"),
    ResourceType("runtime", "A runtime environment: a platform one or the tenant's custom one"),
    ResourceType("config", "A model service config and its versions"),
    ResourceType("bucket", "A bucket of the tenant (<name>-<app_id>) and its objects"),
]

ACTIONS = [
    # platform catalogues
    Action("ems:DescribeRegions", "List regions", "region"),
    Action("ems:DescribeRuntimes", "List runtime environments", "runtime"),
    Action("ems:CreateRuntime", "Create a custom runtime", "runtime", W, True),
    Action("ems:DeleteRuntime", "Delete a custom runtime", "runtime", W, True),
    # model configs and versions
    Action("ems:DescribeModelConfigs", "List model service configs", "config", R, True),
    Action("ems:DescribeModelConfig", "See one model service config", "config", R, True),
    Action("ems:CreateModelConfig", "Create a model service config", "config", W, True),
    Action("ems:DeleteModelConfig", "Delete a model service config", "config", W, True),
    Action("ems:DescribeModelConfigVersions", "List a config's versions", "config", R, True),
    Action("ems:CreateModelConfigVersion", "Add a version to a config", "config", W, True),
    Action(
        "ems:DeleteModelConfigVersion",
        "Delete a config version no service or job uses",
        "config",
        W,
        True,
    ),
    # storage: buckets and objects (through the service role or the tenant's credentials)
    Action("storage:ListBuckets", "List the tenant's buckets", "bucket", R, True),
    Action("storage:CreateBucket", "Create a bucket (named <name>-<app_id>)", "bucket", W, True),
    Action("storage:ListObjects", "Browse a bucket's objects", "bucket", R, True),
    Action("storage:GetObject", "Read an object", "bucket", R, True),
    Action("storage:PutObject", "Upload objects into a bucket", "bucket", W, True),
    Action("storage:DeleteObject", "Delete objects from a bucket", "bucket", W, True),
]
