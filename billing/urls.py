from django.urls import path

from billing import views

app_name = "billing"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("budget/", views.budget_update, name="budget"),
    path("exports/<str:token>/", views.export_download, name="export-download"),
    path("<str:month>/export/<str:fmt>/", views.export, name="export"),
]
