"""The local render server: HTTP app, render queue, its persistent store and the access token."""
