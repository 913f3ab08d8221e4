from django.urls import path

from serving import views, views_invoke

app_name = "serving"

urlpatterns = [
    path("", views.service_list, name="service-list"),
    path("new/", views.service_create, name="service-create"),
    path("<str:service_id>/", views.service_detail, name="service-detail"),
    path("<str:service_id>/invoke/", views_invoke.invoke_page, name="service-invoke"),
    path("<str:service_id>/invoke/token/", views_invoke.invoke_token, name="service-invoke-token"),
    path(
        "<str:service_id>/invoke/console/",
        views_invoke.invoke_console,
        name="service-invoke-console",
    ),
    path("<str:service_id>/<str:action>/", views.service_action, name="service-action"),
]
