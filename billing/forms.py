"""Forms of the billing pages (validate shapes; the services decide)."""

from __future__ import annotations

from django import forms


class BudgetForm(forms.Form):
    monthly_amount = forms.DecimalField(
        max_digits=14, decimal_places=2, min_value=0, label="Monthly budget"
    )
    thresholds = forms.CharField(
        initial="50, 80, 100", label="Alert at (% of the budget, comma-separated)"
    )
    stop_at_limit = forms.BooleanField(
        required=False, label="Stop services on public groups at 100% (and refuse new ones)"
    )
    email = forms.EmailField(required=False, label="Alert email (default: the main account's)")

    def __init__(self, *args, instance=None, **kwargs):
        if instance is not None and not args:
            kwargs["initial"] = {
                "monthly_amount": instance.monthly_amount,
                "thresholds": ", ".join(str(t) for t in instance.thresholds),
                "stop_at_limit": instance.stop_at_limit,
                "email": instance.email,
            }
        super().__init__(*args, **kwargs)

    def clean_thresholds(self):
        try:
            return [
                int(part) for part in self.cleaned_data["thresholds"].split(",") if part.strip()
            ]
        except ValueError:
            raise forms.ValidationError("Write whole percents separated by commas.") from None
