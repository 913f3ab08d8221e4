"""Web forms: plain labelled fields with stable names; the services decide."""

from __future__ import annotations

from django import forms
from django.contrib.auth import authenticate, password_validation

from accounts.actor import suspension_refusal
from portal import jsonlimits


class SignupForm(forms.Form):
    username = forms.CharField(max_length=150)
    email = forms.EmailField()
    password = forms.CharField(widget=forms.PasswordInput)
    tenant_name = forms.CharField(max_length=100, required=False, label="Account name")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # the rules are shown before the first try, not only after a refusal
        help_html = password_validation.password_validators_help_text_html()
        self.fields["password"].help_text = help_html


class LoginForm(forms.Form):
    app_id = forms.CharField(
        max_length=10,
        required=False,
        label="App ID (sub-accounts only)",
        help_text="Sub-accounts: your account's app id, with your sub-account name below.",
    )
    username = forms.CharField(max_length=254, label="Username, email or sub-account name")
    password = forms.CharField(widget=forms.PasswordInput)

    def __init__(self, request=None, *args, **kwargs):
        self.request = request
        self.user = None
        super().__init__(*args, **kwargs)

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        self.user = authenticate(
            self.request,
            username=data["username"],
            password=data["password"],
            app_id=(data.get("app_id") or "").strip() or None,
        )
        if self.user is None:
            raise forms.ValidationError(
                "Wrong login or password (sub-accounts also need the app id)."
            )
        refusal = suspension_refusal(self.user)
        if refusal:
            self.user = None
            raise forms.ValidationError(refusal, code="suspended")
        return data


class SubAccountForm(forms.Form):
    name = forms.CharField(max_length=64)
    password = forms.CharField(widget=forms.PasswordInput)
    email = forms.EmailField(required=False)


class InviteForm(forms.Form):
    email = forms.EmailField()


class PolicyForm(forms.Form):
    name = forms.CharField(max_length=128)
    description = forms.CharField(max_length=300, required=False)
    document = forms.CharField(widget=forms.Textarea(attrs={"rows": 14, "cols": 80}))

    def clean_document(self):
        try:
            return jsonlimits.loads(self.cleaned_data["document"])
        except ValueError as exc:
            raise forms.ValidationError(f"document: malformed JSON: {exc}") from None


class SimulateForm(forms.Form):
    member = forms.ModelChoiceField(queryset=None)
    action = forms.CharField(max_length=128)
    resource = forms.CharField(max_length=300)

    def __init__(self, *args, members=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["member"].queryset = members


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=64)


def apply_errors(form, error) -> None:
    """Put a service's ValidationError on the form's fields (or the form)."""
    if hasattr(error, "error_dict"):
        for field, errors in error.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, error.messages)
