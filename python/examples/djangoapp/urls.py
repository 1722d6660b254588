from django.urls import path

from . import views

urlpatterns = [
    path("ping/", views.ping),
    path("info/", views.info),
    path("expensive/<str:key>/", views.expensive),
    path("limited/", views.limited),
]
