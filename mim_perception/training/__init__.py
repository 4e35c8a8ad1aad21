"""Training side: data sources, augmentation, corruptions, metrics (and, later, pretrain/finetune loops).

Only ``data.collate`` and the nets need torch; sources, augmentation, corruptions and metrics are numpy/cv2
so the perception node (letterbox) and the drift monitor (corruptions) can use them without torch.
"""
