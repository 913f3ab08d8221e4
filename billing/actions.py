"""The billing app's actions and resource types (gathered by ``accounts.catalogue``)."""

from accounts.catalogue import Action, ResourceType

RESOURCE_TYPES = [
    ResourceType("usage", "Usage records of the tenant's services and jobs"),
    ResourceType("bill", "A monthly bill"),
    ResourceType("budget", "A budget and what happens when it is spent"),
]

ACTIONS = [
    Action("billing:DescribeUsage", "Read usage records", "usage"),
    Action("billing:DescribeBills", "Read monthly bills", "bill"),
    Action("billing:ExportBill", "Export a bill (CSV, spreadsheet)", "bill"),
    Action("billing:DescribeBudgets", "Read budgets", "budget"),
    Action("billing:PutBudget", "Set a budget", "budget", "write"),
]
