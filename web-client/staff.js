<!-- being written -->
