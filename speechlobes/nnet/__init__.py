"""Neural building blocks shared by every lobe: attention, position encodings, lengths, losses."""
