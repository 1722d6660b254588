"""A minimal Django project whose caches are shmcache.django.ShmCache."""
