"""The preset policies the platform ships (rows with no tenant), written by the bootstrap."""

PRESETS = {
    "EMSFullAccess": (
        "Everything in the elastic model service: configs, services, jobs, API keys.",
        [{"effect": "allow", "action": ["ems:*"], "resource": ["*"]}],
    ),
    "EMSReadOnlyAccess": (
        "Read-only access to the elastic model service and its storage listings.",
        [
            {
                "effect": "allow",
                "action": ["ems:Describe*", "ems:List*", "storage:List*"],
                "resource": ["*"],
            }
        ],
    ),
    "EMSAuthorizeRole": (
        "Authorize the platform's service role (EMS_ServiceRole) for the account.",
        [
            {
                "effect": "allow",
                "action": ["accounts:AuthorizeServiceRole", "accounts:DescribeServiceRole"],
                "resource": ["*"],
            }
        ],
    ),
    "StorageFullControl": (
        "Browse buckets, read and upload objects.",
        [{"effect": "allow", "action": ["storage:*"], "resource": ["*"]}],
    ),
    "BillingFullAccess": (
        "Usage, bills, exports and budgets.",
        [{"effect": "allow", "action": ["billing:*"], "resource": ["*"]}],
    ),
    "BillingReadOnlyAccess": (
        "Read usage and bills, export bills.",
        [
            {
                "effect": "allow",
                "action": ["billing:Describe*", "billing:ExportBill"],
                "resource": ["*"],
            }
        ],
    ),
    "AccountsFullAccess": (
        "Sub-accounts, collaborators, policies and their attachments, the service role, audit.",
        [{"effect": "allow", "action": ["accounts:*"], "resource": ["*"]}],
    ),
}
