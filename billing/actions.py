"""The billing app's actions (the catalogue's ``billing:DescribeUsage``, ``DescribeBills``,
``ExportBill``, ``DescribeBudgets`` and ``PutBudget`` were declared by accounts first and keep
their definitions there; these are the ones billing adds)."""

from accounts.catalogue import Action

ACTIONS = [
    Action("ems:DescribePrices", "Read the price list", "price"),
    Action("billing:DescribePurchases", "List dedicated-group purchases", "purchase"),
    Action(
        "billing:RenewPurchase",
        "Renew a dedicated group or set its auto-renew",
        "purchase",
        "write",
    ),
]
