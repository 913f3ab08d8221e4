"""The accounts app's actions and resource types (gathered by ``accounts.catalogue``).

Never rename an action: policy documents name them.
"""

from accounts.catalogue import Action, ResourceType

R, W = "read", "write"

RESOURCE_TYPES = [
    ResourceType("api-key", "An API key of the acting member"),
    ResourceType("role", "The platform's service role (EMS_ServiceRole)"),
    ResourceType("storage-credential", "The tenant's own object-storage credentials"),
    ResourceType("member", "A sub-account or collaborator (membership)"),
    ResourceType("policy", "A custom policy of the tenant or a preset"),
    ResourceType("audit", "The tenant's audit log"),
]

ACTIONS = [
    # API keys of the acting member (the member's own keys only)
    Action("ems:ListApiKeys", "List your API keys", "api-key"),
    Action("ems:CreateApiKey", "Create an API key (shown once)", "api-key", W),
    Action("ems:DeleteApiKey", "Revoke one of your API keys", "api-key", W),
    # the service role and storage credentials
    Action("accounts:DescribeServiceRole", "See whether EMS_ServiceRole is authorized", "role"),
    Action("accounts:AuthorizeServiceRole", "Authorize EMS_ServiceRole for the tenant", "role", W),
    Action("accounts:RevokeServiceRole", "Revoke EMS_ServiceRole (blocks new deploys)", "role", W),
    Action(
        "accounts:PutStorageCredential",
        "Store the tenant's own storage credentials",
        "storage-credential",
        W,
    ),
    Action(
        "accounts:DeleteStorageCredential",
        "Forget the tenant's storage credentials",
        "storage-credential",
        W,
    ),
    # members
    Action("accounts:ListSubAccounts", "List sub-accounts", "member"),
    Action("accounts:DescribeSubAccount", "See one sub-account", "member"),
    Action("accounts:CreateSubAccount", "Create a sub-account", "member", W),
    Action("accounts:UpdateSubAccount", "Change a sub-account (password, active)", "member", W),
    Action("accounts:DeleteSubAccount", "Delete a sub-account", "member", W),
    Action("accounts:ListCollaborators", "List collaborators and invitations", "member"),
    Action("accounts:InviteCollaborator", "Invite a collaborator by email", "member", W),
    Action("accounts:DeleteCollaborator", "Remove a collaborator or invitation", "member", W),
    # policies
    Action("accounts:ListPolicies", "List custom and preset policies", "policy"),
    Action("accounts:DescribePolicy", "See a policy document", "policy"),
    Action("accounts:CreatePolicy", "Create a custom policy", "policy", W),
    Action("accounts:UpdatePolicy", "Change a custom policy", "policy", W),
    Action("accounts:DeletePolicy", "Delete a custom policy", "policy", W),
    Action("accounts:ListAttachedPolicies", "List the policies attached to a member", "member"),
    Action("accounts:AttachPolicy", "Attach a policy to a member", "member", W),
    Action("accounts:DetachPolicy", "Detach a policy from a member", "member", W),
    Action("accounts:SimulatePolicy", "Ask the policy simulator", "member"),
    Action("accounts:ListAuditEvents", "Read the audit log", "audit"),
]
