"""Native mode: the platform's services installed into a cache and run under supervisord."""
