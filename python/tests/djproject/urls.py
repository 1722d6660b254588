from django.urls import path

from . import views

urlpatterns = [
    path("page/", views.page),
    path("computed/<str:key>/", views.computed),
    path("hits/", views.hits),
]
