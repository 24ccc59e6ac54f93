/* What the fuzz targets share. */
#ifndef FUZZ_H
#define FUZZ_H

/* Printable ASCII, spaces included: what an error shown to users is. */
static inline int
text_is_ascii(const char *s)
{
	for (; *s != '\0'; s++)
		if (*s < 0x20 || *s > 0x7e)
			return 0;
	return 1;
}

#endif /* FUZZ_H */
