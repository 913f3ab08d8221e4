"""The billing app's actions and resource types (gathered by ``accounts.catalogue``)."""

from accounts.catalogue import Action, ResourceType

RESOURCE_TYPES = [
    ResourceType("usage", "Usage records of the tenant's services and jobs"),
    ResourceType("bill", "A monthly bill"),
    ResourceType("budget", "A budget and what happens when it is spent"),
    ResourceType("price", "The platform's price list"),
    ResourceType("purchase", "A dedicated resource group bought for a period"),
]

ACTIONS = [
    Action("billing:DescribeUsage", "Read usage records", "usage"),
    Action("billing:DescribeBills", "Read monthly bills", "bill"),
    Action("billing:ExportBill", "Export a bill (CSV, spreadsheet)", "bill"),
    Action("billing:DescribeBudgets", "Read budgets", "budget"),
    Action("billing:PutBudget", "Set a budget", "budget", "write"),
    Action("ems:DescribePrices", "Read the price list", "price"),
    Action("billing:DescribePurchases", "List dedicated-group purchases", "purchase"),
    Action(
        "billing:RenewPurchase",
        "Renew a dedicated group or set its auto-renew",
        "purchase",
        "write",
    ),
]
